"""`alface score-pool` (hidden): score the free pool with the latest model, as `alface loop` does.

The loop runs it under torchrun (or srun) for its scoring step when training runs on several
processes (alface.launch); it is the loop's own call, alface.batching.score_free_pool, with the
free pool read from the store.
"""

from __future__ import annotations

import argparse

from alface.commands.common import add_overrides, add_workdir, devices_of, open_workdir

HELP = "score the free pool with the latest model (run by `alface loop` under DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from alface.batching import score_free_pool
    from alface.splits import free_pool

    with open_workdir(args) as wd:
        scoring = score_free_pool(wd, devices_of(wd), free_pool(wd.store))
    print(f"scoring {scoring.id}: {scoring.path} ({scoring.n_items} faces, model "
          f"{scoring.model_id})")  # fmt: skip
    return 0
