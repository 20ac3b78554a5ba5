"""`alface review`: export the items whose annotators disagree, for a reviewer."""

from __future__ import annotations

import argparse
import logging

from alface.commands.common import add_overrides, add_workdir, open_workdir

HELP = "export the items whose annotators disagree (the review queue) for a reviewer"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument(
        "--force", action="store_true",
        help="replace the files in a DIR that is not empty (a reviewer's filled review.csv is "
        "lost: import it first)",
    )  # fmt: skip
    parser.add_argument(
        "--image-url", metavar="PREFIX", default=None,
        help="prefix of the image URLs in review_tasks.json (default: Label Studio local files "
        "with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to WORKDIR; see docs/LABELING.md)",
    )  # fmt: skip
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alface.annotate.export import write_review
    from alface.annotate.outdir import check_out_dir

    with open_workdir(args) as wd:
        queue = wd.store.labels.review_queue()
        if not queue:
            print("the review queue is empty: no disagreements to resolve")
            return 0
        check_out_dir(wd.store, Path(args.out), args.force)
        written = write_review(Path(args.out), wd.store, wd.cfg, queue, args.image_url)
        with wd.store.transaction("review"):
            wd.store.log("export_review", {"n": len(queue), "out": str(Path(args.out).resolve())})
    print(f"wrote {len(queue)} item(s) to review: {', '.join(str(p) for p in written.values())}")
    print(
        f"fill the label column of {written['review.csv']}, then: "
        f"alface import-labels {args.workdir} {written['review.csv']} --annotator NAME"
    )
    return 0
