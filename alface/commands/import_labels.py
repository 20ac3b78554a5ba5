"""`alface import-labels`: import labels from a CSV or a Label Studio JSON export."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "import labels from a CSV or a Label Studio JSON export (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 8)")
