"""Compare the linear probe's two heads (train.head=lightning | logreg) on frozen features:
test macro-F1 and accuracy after training on N random labels and on the whole selectable pool,
over seeds, with the benchmark's split (30 % test per class) and training code.

    .venv/bin/python benchmarks/heads.py --config configs/experiment/utkface_dlib.yaml \
        --features-cache runs/features --labels 100,300,all

Each head's regularisation is its own: the Lightning head's weight decay and epochs from the
config; the logistic regression's C chosen by stratified CV on the training labels only.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from alface.benchmark import predict_probs, sub_seed, train_probe
from alface.config import load_config
from alface.datasets import load_dataset, split_test
from alface.device import cpu_devices
from alface.features import embed_folder
from alface.metrics import probs_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", default="300,all", help="comma-separated counts, or all")
    parser.add_argument("--features-cache", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    cfg = load_config(Path(args.config), args.overrides)
    folder = load_dataset(cfg.dataset, cfg.labels.classes)
    tk = cpu_devices().trainer
    cache = Path(args.features_cache) if args.features_cache else None
    emb, y = embed_folder(cfg, folder, tk, cache), folder.targets
    print(f"{len(y):,} images, {cfg.backbone.name} ({emb.shape[1]}-d), {args.seeds} seeds")
    print("| head | labels | macro-F1 | accuracy | C chosen | seconds per fit |")
    print("|---|---|---|---|---|---|")
    for head in ("lightning", "logreg"):
        c = cfg.replace(f"train.head={head}")
        for n_arg in args.labels.split(","):
            rows, cs, t0 = [], [], time.perf_counter()
            for s in range(args.seeds):
                pool, test = split_test(y, cfg.benchmark.test_fraction, s)
                n = len(pool) if n_arg == "all" else int(n_arg)
                idx = np.random.default_rng([s, 7]).permutation(pool)[:n]
                model = train_probe(c, emb[idx], y[idx], len(folder.classes), sub_seed(s, 9), tk)
                m = probs_metrics(predict_probs(model, emb[test]), y[test], folder.classes)
                rows.append((m["macro_f1"], m["acc"]))
                cs.append(getattr(model, "head_c", None))
            f1, acc = np.array(rows).T
            per_fit = (time.perf_counter() - t0) / args.seeds
            chosen = "–" if cs[0] is None else ", ".join(f"{x:g}" for x in cs)
            print(f"| {head} | {n_arg} | {f1.mean():.3f} ± {f1.std():.3f} | "
                  f"{acc.mean():.3f} ± {acc.std():.3f} | {chosen} | {per_fit:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
