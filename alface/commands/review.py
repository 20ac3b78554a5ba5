"""`alface review`: export the items whose annotators disagree, for a reviewer."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "export the items whose annotators disagree, for a reviewer (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 8)")
