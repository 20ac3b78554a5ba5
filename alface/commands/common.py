"""Arguments and set-up shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from alface.workdir import Workdir

if TYPE_CHECKING:
    from alface.device import Devices

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # what a key=value config override looks like


def add_workdir(parser: argparse.ArgumentParser, write: bool = True) -> None:
    """The WORKDIR positional argument, and ``--wait`` for commands that write to it."""
    parser.add_argument("workdir", metavar="WORKDIR", help="the work directory (see `alface init`)")
    if write:
        parser.add_argument(
            "--wait", action="store_true",
            help="when another command is writing to WORKDIR, wait for it to end (default: "
            "refuse at once, naming it)",
        )  # fmt: skip


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Trailing ``key=value`` config overrides."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides for this command, e.g. train.max_epochs=5 backbone=efficientnet_b0",
    )


def open_workdir(args: argparse.Namespace, write: bool = True, lock_dir: bool = True) -> Workdir:
    """Open ``args.workdir`` with ``args.overrides`` (if the command takes them); ``write``
    takes the work dir's lock for the command (see alface.lock) unless ``lock_dir`` is off."""
    return Workdir.open(
        args.workdir, getattr(args, "overrides", ()) or (), write=write,
        command=getattr(args, "command", None) or "command", wait=getattr(args, "wait", False),
        lock_dir=lock_dir,
    )  # fmt: skip


def devices_of(wd: Workdir) -> Devices:
    """The devices a command runs on, from the work dir's config (said once in the log)."""
    from alface.device import resolve_devices

    return resolve_devices(wd.cfg.device, wd.cfg.train.trainer)
