"""`alface benchmark`: active learning vs random: learning curves over several seeds."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from alface.commands.common import add_overrides

HELP = "active learning vs random: learning curves over several seeds (simulated oracle)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="experiment config with a dataset section"
    )
    parser.add_argument(
        "--seeds", type=int, metavar="N", help="number of seeds (default: benchmark.seeds)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: runs/benchmark-<config name>)"
    )
    parser.add_argument(
        "--mode", choices=("curves", "loop"), default="curves",
        help="curves: the selection strategies alone (learning curves); loop: the whole seed "
        "loop (itval and overfitting sets, stop rules, rounds) with every label counted",
    )  # fmt: skip
    parser.add_argument(
        "--features-cache", metavar="DIR",
        help="keep the frozen features in DIR and reuse them when backbone and images match",
    )  # fmt: skip
    add_overrides(parser)
    parser.epilog = (
        "Every strategy in benchmark.strategies labels the same initial set per seed with the "
        "known labels, retrains the head each step (linear probe on frozen features) and is "
        "scored on a held-out test split. Writes benchmark.json (every point), "
        "learning_curves.png and summary.md (labels to reach 95 % / 100 % of random's final "
        "metric and 98 % of the ceiling, a model trained on the whole pool; ratio to random, "
        "AUC). --mode loop simulates `alface loop` under each of benchmark.stop_rules and "
        "writes loop.json, loop.png and loop_summary.md. Example: alface benchmark --config "
        "configs/experiment/utkface.yaml --seeds 5 benchmark.budget=800 benchmark.step=50"
    )


def run(args: argparse.Namespace) -> int:
    from alface.benchmark import run_benchmark, write_benchmark
    from alface.config import load_config
    from alface.device import resolve_devices
    from alface.loopbench import loop_markdown, run_loop_benchmark, write_loop_benchmark
    from alface.plots import summary_markdown
    from alface.progress import progress_bar

    cfg = load_config(Path(args.config), args.overrides or ())
    mode = getattr(args, "mode", "curves")
    suffix = "-loop" if mode == "loop" else ""
    out = Path(args.out or f"runs/benchmark-{Path(args.config).stem}{suffix}")
    command = shlex.join(["alface", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"] else None
    start = time.perf_counter()
    # Lightning and the selection log a line for each of hundreds of fits and batches.
    chatty = [
        logging.getLogger(n) for n in ("lightning.pytorch", "alface.select", "alface.logreg_head")
    ]
    levels = [lg.level for lg in chatty]
    if not getattr(args, "verbose", False):
        for lg in chatty:
            lg.setLevel(logging.WARNING)
    try:
        with progress_bar("benchmark") as advance:
            devices = resolve_devices(cfg.device, cfg.train.trainer)
            run = run_loop_benchmark if mode == "loop" else run_benchmark
            cache = getattr(args, "features_cache", None)
            result = run(cfg, devices, seeds=args.seeds, progress=advance,
                         cache_dir=Path(cache) if cache else None)  # fmt: skip
    finally:
        for lg, level in zip(chatty, levels, strict=True):
            lg.setLevel(level)
    if mode == "loop":
        files = write_loop_benchmark(result, out, command)
        info = result.info
        print(f"{info['dataset']['n']:,} images, {info['backbone']}, {len(info['seeds'])} "
              f"seed(s), stop rules {', '.join(info['rules'])}, "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        for metric, rows in result.summary.items():
            print(f"\n{metric}\n" + loop_markdown(rows, metric))
        for kind, path in files.items():
            print(f"{kind:8s} {path}")
        return 0
    files = write_benchmark(result, out, command)
    info = result.info
    print(
        f"{info['dataset']['n']:,} images, {info['backbone']} {info['image_size']} px, "
        f"{len(info['seeds'])} seed(s), labels {info['schedule'][0]}..{info['schedule'][-1]}, "
        f"{time.perf_counter() - start:.0f} s"
    )
    for metric, rows in result.summary.items():
        print(f"\n{metric}\n" + summary_markdown(rows, info["targets"], metric))
    for kind, path in files.items():
        print(f"{kind:8s} {path}")
    return 0
