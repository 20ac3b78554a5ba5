"""`alface loop`: run or resume the active-learning loops until people are needed."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "run or resume the active-learning loops until people are needed (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 7)")
