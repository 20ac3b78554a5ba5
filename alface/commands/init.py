"""`alface init`: create a work directory from a config."""

from __future__ import annotations

import argparse
import logging

from alface.commands.common import add_overrides

HELP = "create a work directory with its config and an empty store"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", metavar="WORKDIR", help="folder to create")
    parser.add_argument("--config", help="an experiment file, e.g. configs/experiment/demo.yaml")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from alface.config import load_config
    from alface.config_rules import check_names
    from alface.device import require_faiss
    from alface.workdir import CONFIG_NAME, Workdir

    require_faiss()  # selection needs it: say so now, not after the faces are preprocessed
    cfg = load_config(args.config, args.overrides)  # every value checked (alface.config_rules)
    check_names(cfg)
    with Workdir.init(args.workdir, cfg) as wd:
        log.info("created %s (config in %s)", wd.root, wd.root / CONFIG_NAME)
    return 0
