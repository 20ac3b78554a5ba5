"""`alface train`: retrain the classifier and evaluate it on the overfitting and iteration-validation sets."""

from __future__ import annotations

import argparse

from alface.commands.common import add_overrides, add_workdir, devices_of, open_workdir

HELP = "retrain the classifier and evaluate it on the overfitting and iteration-validation sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    # the loop's iteration whose model this is (alface loop runs `alface train` so under DDP)
    parser.add_argument("--iteration", type=int, metavar="ID", help=argparse.SUPPRESS)
    add_overrides(parser)
    parser.epilog = (
        "Labels imported since the last run are moved into train/val first. The best model "
        "(early stopping on labeled-val, train.monitor) goes to WORKDIR/models/N/ with its config "
        "and metrics, and is recorded in the store only when complete. Another backbone is a "
        "config change: backbone=efficientnet_b0; train.mode=linear_probe trains the head only."
    )


def run(args: argparse.Namespace) -> int:
    from alface.progress import progress_bar
    from alface.training import train

    with open_workdir(args) as wd, progress_bar("train") as advance:
        result = train(wd, devices_of(wd), progress=advance, iteration_id=args.iteration)
    print(
        f"model {result.model_id}: {result.path} ({result.backbone}, "
        f"{result.n_labeled} labeled, {result.epochs} epochs)"
    )
    for name, m in result.metrics.items():
        print(f"  {name:8s} n={m['n']:<6d} acc {m['acc']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    return 0
