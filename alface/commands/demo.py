"""`alface demo`: a small complete run of the loop on data shipped with scikit-learn."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "a small complete run of the loop on data shipped with scikit-learn (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 9)")
