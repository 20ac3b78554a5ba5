"""`alface forget`: remove faces from a work dir everywhere (crops, caches, scores, batch files,
labels), keep a tombstone, mark the models trained on them."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import TYPE_CHECKING

from alface.commands.common import add_overrides, add_workdir, open_workdir

if TYPE_CHECKING:
    from alface.privacy.forget import Plan, Selection

HELP = "forget faces everywhere: a person's or a source's data, or faces past retention"
SHOWN = 20  # faces listed by --dry-run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--source", action="append", metavar="PATH",
        help="an input file (image, video or registered crop), or a folder of them: all the "
        "faces found in it (repeat for several)",
    )  # fmt: skip
    what.add_argument(
        "--item", action="append", metavar="ID",
        help="one face, by its uid (batch.csv's item column) or integer id (repeat for several)",
    )  # fmt: skip
    what.add_argument(
        "--older-than", type=float, metavar="DAYS", help="the faces added more than DAYS days ago"
    )
    what.add_argument(
        "--round", type=int, metavar="N",
        help="the faces round N took from the pool: labeled in it, or scrapped when it ended",
    )  # fmt: skip
    what.add_argument(
        "--expired", action="store_true",
        help="the faces older than privacy.retention_days (see the config)",
    )  # fmt: skip
    what.add_argument(
        "--finish", action="store_true",
        help="only finish a forget that was cut short (any writing command does) and compact "
        "the store",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would go; change nothing (takes no lock)"
    )
    parser.add_argument(
        "--from-open-batches", action="store_true",
        help="also forget faces that wait for labels in an open batch: they leave the batch and "
        "its files (default: refused, naming the batch)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", metavar="TEXT",
        help="a reference kept in the tombstone, e.g. the erasure request's number (no names)",
    )  # fmt: skip
    add_overrides(parser)
    parser.epilog = (
        "Removes the faces' crops (never a registered file of yours: those are listed), their "
        "rows in every crop cache and scoring, their rows in batch and review folders (contact "
        "sheets redrawn), their labels and history; the audit log keeps a tombstone (when, who, "
        "how many; no face, path or label). Models trained on them are marked: `alface status` "
        "says to retrain. The store is compacted so no free page holds them. A writing command: "
        "refused while another (e.g. a running loop) holds the work dir. See docs/PRIVACY.md."
    )


def selection_of(args: argparse.Namespace) -> Selection:
    """The Selection the arguments name."""
    from alface.privacy.forget import Selection

    if args.source:
        return Selection("source", tuple(args.source))
    if args.item:
        return Selection("item", tuple(args.item))
    if args.older_than is not None:
        return Selection("older_than", days=args.older_than)
    if args.round is not None:
        return Selection("round", round=args.round)
    return Selection("expired")


def user() -> str:
    """Who runs the command (the tombstone's 'by')."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def run(args: argparse.Namespace) -> int:
    from alface.privacy.forget import forget, open_batch_line, plan_forget
    from alface.workdir import PENDING_KEY

    if args.finish:
        with open_workdir(args) as wd:  # a writer's open finishes a forget that was cut short
            finished = wd.store.get_meta(PENDING_KEY) is None
        print("done: no forget left to finish" if finished else
              "a reader still holds the store's log open: stop it and run this again")  # fmt: skip
        return 0 if finished else 1
    sel = selection_of(args)
    with open_workdir(args, write=not args.dry_run) as wd:
        plan = plan_forget(wd, sel)
        if not plan.items and not plan.sources:
            print("nothing to forget: no face matches")
            return 0
        if args.dry_run:
            _show_plan(plan)
            if plan.open_batches and not args.from_open_batches:
                print(f"refused as it stands: {open_batch_line(plan, wd.store)}")
            print("nothing changed (--dry-run)")
            return 0
        counts, done = forget(wd, plan, user(), args.reference, args.from_open_batches)
        latest = wd.store.runs.latest_model()
    print(f"forgot {counts.faces} face(s) and {counts.sources} input file(s) "
          f"({counts.labels} label(s), {counts.annotations} annotation(s)); "
          f"tombstone: audit entry {counts.tombstone}")  # fmt: skip
    print(f"  removed {done.files} file(s); blanked {done.cache_rows} crop-cache row(s) and "
          f"{done.score_rows} scoring row(s)")  # fmt: skip
    for r in done.folders:
        if r.files:
            print(f"  {r.folder}: {r.rows} row(s) taken out of {', '.join(r.files)}")
        if r.others:
            print(f"  {r.folder}: files alface did not write name these faces, not changed: "
                  f"{', '.join(r.others)}; remove them yourself")  # fmt: skip
    _external(plan.external)
    if counts.models_marked:
        ids = ", ".join(map(str, counts.models_marked))
        now = " (the latest)" if latest is not None and latest.id in counts.models_marked else ""
        print(f"  model(s) {ids}{now} were trained on these faces: retrain (alface train "
              f"{args.workdir}) before using or exporting a model")  # fmt: skip
    if not done.compacted:
        print(
            "  a reader (the labeling page?) kept the store's write-ahead log open, which may "
            "still hold them: stop it; the next command that writes to the work dir empties it"
        )
    return 0


def _show_plan(plan: Plan) -> None:
    print(f"would forget {len(plan.items)} face(s) from {len(plan.sources) or 'their'} input "
          f"file(s):")  # fmt: skip
    for item in plan.items[:SHOWN]:
        print(f"  {item.uid}  {item.split:9}  {item.crop_path}")
    if len(plan.items) > SHOWN:
        print(f"  ... and {len(plan.items) - SHOWN} more")
    print(f"  crop files removed: {len(plan.crops)}; registered files of yours kept: "
          f"{len(plan.external)}")  # fmt: skip
    if plan.batches:
        shown = ", ".join(f"{b} ({len(i)})" for b, i in plan.batches.items())
        print(f"  in batch(es) {shown}; open: {', '.join(map(str, plan.open_batches)) or 'none'}")
    if plan.models:
        print(f"  trained on by model(s) {', '.join(map(str, plan.models))}: to retrain")


def _external(paths: list[str]) -> None:
    if not paths:
        return
    print(
        f"  kept {len(paths)} registered crop file(s) of yours (preprocess --cropped; alface "
        "never deletes your files): delete them yourself if the request covers them:"
    )
    for p in paths[:SHOWN]:
        print(f"    {p}")
    if len(paths) > SHOWN:
        print(f"    ... and {len(paths) - SHOWN} more")
