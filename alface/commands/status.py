"""`alface status`: round, split sizes, class balance, metrics and stop reasons."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "round, split sizes, class balance, metrics and stop reasons (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 4)")
