"""`alface select`: score the pool and write the next batch to label (batch.csv, tasks.json, sheet.png)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alface.commands.common import add_overrides, add_workdir, devices_of, open_workdir

HELP = "score the pool with the latest model and write the next batch to label"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the batch files")
    parser.add_argument(
        "--strategy", metavar="NAME",
        help="selection strategy (default: select.strategy); random needs no model",
    )  # fmt: skip
    parser.add_argument(
        "--size", type=int, metavar="B", help="faces in the batch (default: select.batch_size)"
    )
    add_overrides(parser)
    parser.epilog = (
        "Writes DIR/batch.csv (fill the label column), DIR/tasks.json (Label Studio import, with "
        "the model's predictions as pre-annotations), DIR/label_config.xml, DIR/sheet.png (the "
        "faces by cluster) and, for the share sent to a second annotator, DIR/pairs.csv and "
        "DIR/pairs.json. Then: alface import-labels WORKDIR DIR/batch.csv --annotator NAME."
    )


def run(args: argparse.Namespace) -> int:
    from alface.batching import make_batch
    from alface.grouping import workdir_groups
    from alface.progress import progress_bar
    from alface.select.strategies import get_strategy
    from alface.splits import selectable_pool

    with open_workdir(args) as wd:
        strategy = args.strategy or wd.cfg.select.strategy
        get_strategy(strategy)  # an unknown name fails here, before the pool is scored
        size = args.size if args.size is not None else wd.cfg.select.batch_size
        n_batches = len(wd.store.runs.batches())
        seed = int(wd.cfg.seed) * 1000 + n_batches  # a different, reproducible draw each time
        with progress_bar("score pool") as advance:
            batch = make_batch(
                wd, devices_of(wd), Path(args.out).absolute(),
                selectable_pool(wd.store, workdir_groups(wd)), strategy,
                size, seed, progress=advance,
            )  # fmt: skip
    if batch.message:
        print(batch.message)
    print(f"batch {batch.id}: {len(batch.entries)} faces ({strategy}) in {batch.out_dir}")
    for name in ("batch.csv", "tasks.json", "sheet.png", "pairs.csv"):
        if name in batch.files:
            print(f"  {batch.files[name]}")
    print(f"next: label them, then `alface import-labels {args.workdir} {args.out}/batch.csv`")
    return 0
