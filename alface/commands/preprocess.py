"""`alface preprocess`: detect faces in images, folders and videos and add the crops to the pool."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "detect faces in images, folders and videos and add the crops to the pool (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 3)")
