"""`alface import-labels`: import labels from a CSV or a Label Studio JSON export."""

from __future__ import annotations

import argparse
import sys

from alface.commands.common import add_overrides, add_workdir, open_workdir

HELP = "import labels from a CSV (item,label[,annotator]) or a Label Studio JSON export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument(
        "file",
        metavar="FILE",
        help="a CSV with item and label columns, or a Label Studio JSON export",
    )
    parser.add_argument(
        "--annotator", metavar="NAME", help="who labeled the rows that do not name an annotator"
    )
    parser.add_argument(
        "--skip-bad", action="store_true",
        help="import the good rows and report the bad ones (default: reject the whole file)",
    )  # fmt: skip
    parser.add_argument(
        "--review", action="store_true",
        help="these are a reviewer's labels: they resolve disagreements (review.csv says so itself)",
    )  # fmt: skip
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from alface.annotate.ingest import import_labels

    with open_workdir(args) as wd:
        report = import_labels(
            wd.store, args.file, wd.cfg.labels.classes, annotator=args.annotator,
            skip_bad=args.skip_bad, review=args.review,
        )  # fmt: skip
        queue = len(wd.store.labels.review_queue())
    for p in report.problems:
        print(f"{args.file}: {report.unit} {p.row}: item {p.item or '-'}: {p.why}", file=sys.stderr)
    if report.duplicate:
        print(f"{args.file} was imported before ({report.n_rows} labels); nothing changed")
        return 0
    if report.rejected:
        print(
            f"alface import-labels: rejected {args.file}: {len(report.problems)} problem(s) "
            f"above; nothing imported, the store is unchanged "
            f"({'no good rows' if args.skip_bad else 'fix them, or --skip-bad takes the good rows'})",
            file=sys.stderr,
        )
        return 2
    skipped = f", {len(report.problems)} bad skipped" if report.problems else ""
    print(
        f"imported {report.n_imported} label(s) from {args.file} "
        f"by {', '.join(report.annotators) or '-'}: {report.n_superseded} superseded an earlier "
        f"label, {report.n_unchanged} unchanged, {report.n_blank} blank{skipped}; "
        f"review queue: {queue} item(s)"
    )
    return 0
