"""`alface select`: score the pool and write the next batch to label (batch.csv, tasks.json, sheet.png)."""

from __future__ import annotations

import argparse
import shlex
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
    parser.add_argument(
        "--force", action="store_true",
        help="replace the files in a DIR that is not empty (never the folder of a batch still "
        "open: its labels would be lost)",
    )  # fmt: skip
    add_overrides(parser)
    parser.epilog = (
        "Writes DIR/batch.csv (fill the label column), DIR/tasks.json (Label Studio import, with "
        "the model's predictions as pre-annotations), DIR/label_config.xml, DIR/sheet.png (the "
        "faces by cluster) and, for the share sent to a second annotator, DIR/pairs.csv and "
        "DIR/pairs.json. DIR must be new or empty (or --force). Then: alface import-labels "
        "WORKDIR DIR/batch.csv --annotator NAME."
    )


def run(args: argparse.Namespace) -> int:
    from alface.batching import make_batch
    from alface.config_rules import check_names
    from alface.grouping import workdir_groups
    from alface.progress import progress_bar
    from alface.select.strategies import get_strategy
    from alface.splits import selectable_pool

    with open_workdir(args) as wd:
        check_names(wd.cfg)
        strategy = args.strategy or wd.cfg.select.strategy
        get_strategy(strategy)  # an unknown name fails here, before the pool is scored
        size = args.size if args.size is not None else wd.cfg.select.batch_size
        n_batches = len(wd.store.runs.batches())
        seed = int(wd.cfg.seed) * 1000 + n_batches  # a different, reproducible draw each time
        with progress_bar("score pool") as advance:
            batch = make_batch(
                wd, devices_of(wd), Path(args.out).absolute(),
                selectable_pool(wd.store, workdir_groups(wd)), strategy, size, seed,
                progress=advance, force=args.force,
            )  # fmt: skip
    if batch.message:
        print(batch.message)
    print(f"batch {batch.id}: {len(batch.entries)} faces ({strategy}) in {batch.out_dir}")
    for name in ("batch.csv", "tasks.json", "label_config.xml", "sheet.png", "pairs.csv",
                 "pairs.json"):  # fmt: skip
        if name in batch.files:
            print(f"  {batch.files[name]}")
    print(next_steps(args.workdir, batch.files))
    return 0


def next_steps(workdir: str, files: dict[str, Path]) -> str:
    """What to do with a written batch: commands that work as printed."""
    csv_file, tasks = shlex.quote(str(files["batch.csv"])), shlex.quote(str(files["tasks.json"]))
    text = (
        f"next: fill the label column of batch.csv, then `alface import-labels "
        f"{shlex.quote(workdir)} {csv_file} --annotator NAME`; or import {tasks} into Label "
        f"Studio (labeling config: label_config.xml), label, export JSON, then `alface "
        f"import-labels {shlex.quote(workdir)} EXPORT.json`"
    )
    if "pairs.csv" in files:
        text += (
            "; a second annotator labels pairs.csv (or pairs.json) the same way, under their name"
        )
    return text
