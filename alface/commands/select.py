"""`alface select`: score the pool and write the next batch to label (batch.csv, tasks.json, sheet.png)."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "score the pool and write the next batch to label (batch.csv, tasks.json, sheet.png) (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 6)")
