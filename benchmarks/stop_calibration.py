"""Choose the label-free stop rules' threshold (``loop.stop_kappa``) on one data set, to use it
on another: the whole loop simulated (``alface benchmark --mode loop``) at each threshold, and
per rule, among the thresholds whose final test metric stays within ``--tolerance`` of the
strictest threshold's (which, at 0.99, runs the pools nearly dry), the cheapest in labels, and
of equally cheap ones the strictest (:func:`alface.loopbench.cheapest_kappa`).

    .venv/bin/python benchmarks/stop_calibration.py --config configs/experiment/digits_stop.yaml \
        --kappas 0.8,0.85,0.9,0.93,0.95,0.97,0.98,0.99 --out runs/stop-calibration

Writes ``calibration.json`` (every run's rows and the chosen thresholds) and prints a table.
The face benchmarks then run with the chosen value, e.g. ``loop.stop_kappa=0.9``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from alface.config import load_config
from alface.device import cpu_devices
from alface.fsutil import write_file
from alface.loopbench import cheapest_kappa, run_loop_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--kappas", default="0.8,0.85,0.9,0.93,0.95,0.97,0.98,0.99")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="final-metric loss allowed against the strictest threshold")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--features-cache", default="runs/features")
    parser.add_argument("--out", default="runs/stop-calibration")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    for name in ("lightning.pytorch", "alface.select", "alface.logreg_head"):
        logging.getLogger(name).setLevel(logging.WARNING)
    base = load_config(Path(args.config), args.overrides)
    kappas = sorted(float(k) for k in args.kappas.split(","))
    metric = base.benchmark.metric
    rows: dict[str, list[dict]] = {}
    start = time.perf_counter()
    for kappa in kappas:
        cfg = base.replace(f"loop.stop_kappa={kappa}")
        res = run_loop_benchmark(cfg, cpu_devices(), seeds=args.seeds,
                                 cache_dir=Path(args.features_cache))  # fmt: skip
        for row in res.summary[metric]:
            rows.setdefault(row["rule"], []).append(
                {
                    "kappa": kappa,
                    "labels": row["labels"],
                    "labels_std": row["labels_std"],
                    "final": row["final"],
                    "final_std": row["final_std"],
                    "random_same": row["random_same"],
                    "iterations": row["iterations"],
                }  # fmt: skip
            )
        print(f"kappa {kappa}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    chosen = {rule: cheapest_kappa(r, args.tolerance) for rule, r in rows.items()}
    print(f"\n{metric}, {base.dataset.builtin or base.dataset.root}, tolerance {args.tolerance}")
    print("| rule | stop_kappa | labels | final | random, same labels | iterations |")
    print("|---|---|---|---|---|---|")
    for rule, rs in rows.items():
        for r in rs:
            mark = " **chosen**" if r["kappa"] == chosen[rule] else ""
            print(f"| {rule} | {r['kappa']}{mark} | {r['labels']:.0f} ± {r['labels_std']:.0f} | "
                  f"{r['final']:.3f} ± {r['final_std']:.3f} | {r['random_same']:.3f} | "
                  f"{r['iterations']:.1f} |")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / "calibration.json", json.dumps(
        {"config": args.config, "overrides": args.overrides, "metric": metric,
         "tolerance": args.tolerance, "rows": rows, "chosen": chosen,
         "seconds": round(time.perf_counter() - start, 1)}, indent=2))  # fmt: skip
    print(f"chosen: {chosen} ({time.perf_counter() - start:.0f} s) -> {out / 'calibration.json'}")


if __name__ == "__main__":
    main()
