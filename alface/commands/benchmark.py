"""`alface benchmark`: active learning vs random: learning curves over several seeds."""

from __future__ import annotations

import argparse

from alface.errors import AlfaceError

HELP = "active learning vs random: learning curves over several seeds (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise AlfaceError("this command is not built yet (issue 9)")
