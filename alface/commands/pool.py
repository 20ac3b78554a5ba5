"""`alface pool restore`: scrapped faces back into the pool for the next round.

At a round's end the loop scraps the unused pool (the seed's behaviour, and still the
default); preprocessing the same files again adds nothing, since the store knows them. This
brings them back: all scrapped faces, those scrapped at the end of one round, or those of one
source file (a video, a photo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alface.commands.common import add_workdir, open_workdir
from alface.errors import AlfaceError

HELP = "the unlabeled pool: bring scrapped faces back (restore)"


class PoolCommandError(AlfaceError, ValueError):
    """A pool command asked for a round or source the store does not have."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    restore = sub.add_parser(
        "restore", help="scrapped faces back into the pool, for the next round",
        description="Move scrapped faces (the unused pool a round's end scrapped) back into "
        "the unlabeled pool: all of them, or those of one round or one source file.",
    )  # fmt: skip
    add_workdir(restore)
    which = restore.add_mutually_exclusive_group()
    which.add_argument(
        "--round", type=int, metavar="N", help="only the faces scrapped at the end of round N"
    )
    which.add_argument(
        "--source", metavar="PATH", help="only the faces of this input file (video or image)"
    )


def run(args: argparse.Namespace) -> int:
    from alface.annotate.record import source_candidates
    from alface.splits import restore_scrapped

    with open_workdir(args) as wd:
        store = wd.store
        rounds = [r.id for r in store.runs.rounds()]
        if args.round is not None and args.round not in rounds:
            known = f"rounds are {rounds[0]}-{rounds[-1]}" if rounds else "no round has run yet"
            raise PoolCommandError(f"--round {args.round}: no such round; {known}")
        sources = None
        if args.source is not None:
            sources = source_candidates(args.source, [Path.cwd(), wd.root.absolute()])
            if not store.items.by_source(sources):
                raise PoolCommandError(f"--source {args.source}: no faces of that file here")
        ids = restore_scrapped(store, args.round, sources)
    what = f" of round {args.round}" if args.round is not None else ""
    what += f" from {args.source}" if args.source is not None else ""
    if not len(ids):
        print(f"no scrapped faces{what}: nothing to restore")
        return 0
    print(f"{len(ids)} scrapped faces{what} are back in the pool")
    print(f"next: `alface loop {args.workdir}` starts a round with them (or `alface select`)")
    return 0
