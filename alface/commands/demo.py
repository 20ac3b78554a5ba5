"""`alface demo`: a small, complete, real run of the loop on scikit-learn's digits (not faces).

It runs the same commands a user runs, and prints each one: init, preprocess --cropped (two
pools), loop --oracle (two rounds), status, and a small benchmark (AL vs random curves).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

HELP = "a small complete run of the loop on data shipped with scikit-learn (digits, not faces)"
DEMO_CONFIG = "configs/experiment/demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="where everything goes (default: runs/demo); emptied first")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=2, help="benchmark seeds (default: 2)")
    parser.epilog = (
        "The data are scikit-learn's 1,797 handwritten digits, NOT faces: they ship inside a "
        "dependency, so the demo runs anywhere, offline, in a few minutes on 2 CPU cores. A "
        "simulated annotator (the oracle) answers the labeling requests."
    )


def run(args: argparse.Namespace) -> int:
    from alface.config import CONFIG_ROOT
    from alface.datasets import digits_folder

    out = Path(args.out).absolute()
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    print(f"alface demo: the active-learning loop on scikit-learn's digits (not faces) -> {out}")
    data = digits_folder(out / "data")
    oracle = out / "data" / "oracle.csv"
    pools = _pools(data, out / "data", oracle)
    work, config = out / "work", str(Path(CONFIG_ROOT) / "experiment" / "demo.yaml")
    _step(["init", str(work), "--config", config])
    _step(["preprocess", str(work), str(pools[0]), "--cropped"], ok=(0,))
    _step(["loop", str(work), "--oracle", str(oracle)])
    print("\n# a new unlabeled pool arrives: round 2")
    _step(["preprocess", str(work), str(pools[1]), "--cropped"], ok=(0,))
    _step(["loop", str(work), "--oracle", str(oracle)])
    _step(["status", str(work)])
    bench = out / "benchmark"
    _step(["benchmark", "--config", config, "--seeds", str(args.seeds), "--out", str(bench)])
    print(f"\nalface demo: done in {time.time() - start:.0f} s. Where the files went:")
    print(f"  {work}/batches/        the label batches (batch.csv, tasks.json, sheet.png)")
    print(f"  {work}/reports/        a report per iteration (report.json, report.png)")
    print(f"  {work}/models/         the checkpoints; {work}/alface.db the store")
    for png in sorted(bench.glob("*.png")):
        print(f"  {png}   learning curves: AL vs random")
    return 0


def _pools(data, folder: Path, oracle: Path) -> list[Path]:  # noqa: ANN001
    """Two pools (folders of copies: the first half, the second half) and an oracle CSV."""
    half = len(data.paths) // 2
    pools, rows = [folder / "pool1", folder / "pool2"], []
    for k, (path, label) in enumerate(zip(data.paths, data.labels, strict=True)):
        dst = pools[k >= half] / Path(path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        rows.append((str(dst.resolve()), str(label)))
    with oracle.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return pools


def _step(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    """Run one alface command as a user would, echoing it first."""
    from alface.cli import main
    from alface.errors import AlfaceError

    print(f"\n$ alface {' '.join(argv)}", flush=True)
    code = main(argv)
    if code not in ok:
        raise AlfaceError(f"demo step `alface {argv[0]}` failed with exit code {code}")
