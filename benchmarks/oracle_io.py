"""Time the benchmark's building blocks on real data: load a labeled folder, write the demo's
digits, answer and record every item with the simulated oracle, draw the reports.

    .venv/bin/python benchmarks/oracle_io.py --root ../shared/data/utkface-dev
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alface.config import Config, DatasetConfig
from alface.curves import Curve, summary_table
from alface.datasets import digits_folder, load_dataset, split_test, write_labels_csv
from alface.oracle import Oracle
from alface.plots import iteration_report, plot_learning_curves
from alface.store import NewItem
from alface.workdir import Workdir


def _timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label}: {time.perf_counter() - t:.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/utkface-dev")
    parser.add_argument("--parser", default="utkface_race")
    args = parser.parse_args()
    cfg = Config()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = _timed(
            "load_dataset (parser)",
            load_dataset,
            DatasetConfig(root=args.root, parser=args.parser),
            cfg.labels.classes,
        )
        print(f"  {len(folder)} images, {len(folder.skipped)} skipped, {folder.counts()}")
        _timed("split_test", split_test, folder.labels, 0.3, 0)
        csv = _timed("write_labels_csv", write_labels_csv, folder, tmp / "labels.csv")
        _timed("digits_folder (fresh, 1,797 PNGs)", digits_folder, tmp / "digits")
        _timed("digits_folder (reused)", digits_folder, tmp / "digits")
        wd = Workdir.init(tmp / "work", cfg)
        records = [NewItem(str(p), hashlib.sha1(str(p).encode()).hexdigest()) for p in folder.paths]
        with wd.store.transaction("bench"):
            ids = wd.store.items.add(records, pool=1)
        oracle = _timed("Oracle.from_csv", Oracle.from_csv, csv, cfg.labels.classes)
        _timed(f"oracle.answer ({len(ids)} items)", oracle.answer, wd.store, ids)
        _timed(f"oracle.annotate ({len(ids)} items)", oracle.annotate, wd.store, ids)
        rng = np.random.default_rng(0)
        labels = np.arange(100, 1501, 100)
        curves = {
            s: Curve(labels, rng.random((5, labels.size)))
            for s in ("random", "entropy", "entropy_diversity")
        }
        _timed("summary_table", summary_table, curves)
        _timed("plot_learning_curves", plot_learning_curves, curves, "macro_f1", tmp / "c.png")
        c = cfg.labels.classes
        info = {
            "labels_used": 400,
            "decision": "continue",
            "metrics": {s: {"acc": 0.5, "macro_f1": 0.4, "confusion": np.eye(5) * 9} for s in ("overfit", "itval")},
            "balance": {k: dict.fromkeys(c, 10) for k in ("pool", "batch", "labeled")},
        }  # fmt: skip
        _timed("iteration_report", iteration_report, tmp / "it", info)
        wd.close()


if __name__ == "__main__":
    main()
