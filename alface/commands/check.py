"""`alface check`: find the items whose crop file is gone; --fix sets them aside."""

from __future__ import annotations

import argparse

from alface.commands.common import add_workdir, open_workdir

HELP = "find items whose crop file is gone (deleted or moved); --fix sets them aside"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument(
        "--fix", action="store_true",
        help="move those items to the split 'missing' (out of training, scoring and selection; "
        "labels and history kept), and bring back those whose file has returned",
    )  # fmt: skip
    parser.epilog = (
        "Exit code 0: every crop is there (or --fix set the others aside); 1: some are gone "
        "(without --fix). A registered crop (preprocess --cropped) is the original file, so "
        "deleting or moving it takes it from the work dir; put it back and run --fix again to "
        "return its item."
    )


def run(args: argparse.Namespace) -> int:
    from alface.errors import one_line
    from alface.faces.preprocess_report import path_text
    from alface.missing import bring_back, find_missing, set_aside

    with open_workdir(args, write=args.fix) as wd:
        gone = find_missing(wd.store)
        for item in gone:
            print(one_line(f"item {item.uid} ({item.split}): crop gone: "
                           f"{path_text(item.crop_file(wd.root))}"))  # fmt: skip
        if not args.fix:
            print(f"{len(gone)} item(s) without their crop file"
                  + (f"; `alface check {args.workdir} --fix` sets them aside" if gone else ""))  # fmt: skip
            return 1 if gone else 0
        moved = set_aside(wd.store, gone)
        back = bring_back(wd.store)
    print(f"set aside {moved} item(s) in split 'missing'; brought back "
          f"{sum(back.values())} whose crop returned")  # fmt: skip
    return 0
