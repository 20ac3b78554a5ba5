"""`alface train`: retrain the classifier and evaluate it on the overfitting and iteration-validation sets."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "retrain the classifier and evaluate it on the overfitting and iteration-validation sets (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 5)")
