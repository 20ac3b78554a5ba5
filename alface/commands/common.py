"""Arguments and set-up shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from alface.workdir import Workdir

if TYPE_CHECKING:
    from alface.device import Devices

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # what a key=value config override looks like


def add_workdir(parser: argparse.ArgumentParser) -> None:
    """The WORKDIR positional argument."""
    parser.add_argument("workdir", metavar="WORKDIR", help="the work directory (see `alface init`)")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Trailing ``key=value`` config overrides."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides for this command, e.g. train.max_epochs=5 backbone=efficientnet_b0",
    )


def open_workdir(args: argparse.Namespace) -> Workdir:
    """Open ``args.workdir`` with ``args.overrides`` (if the command takes them)."""
    return Workdir.open(args.workdir, getattr(args, "overrides", ()) or ())


def devices_of(wd: Workdir) -> Devices:
    """The devices a command runs on, from the work dir's config (said once in the log)."""
    from alface.device import resolve_devices

    return resolve_devices(wd.cfg.device, wd.cfg.train.trainer)
