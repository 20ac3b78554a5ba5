"""How often k-means merges two of ten well-separated blobs, by seeding and number of runs.

    .venv/bin/python benchmarks/kmeans_merges.py            # 200 seeds per setting
    .venv/bin/python benchmarks/kmeans_merges.py --seeds 50

Blobs: ten Gaussian blobs (100 points each, unit spread) with centres on the axes of a
``dim``-dimensional space (dim >= 10), ``sep`` from the origin (so sep * sqrt(2) apart). A run "merges"
when one cluster holds points of two blobs. Settings: FAISS's own k-means++ seeding run once
(alface before issue 20) and three times (FAISS's nredo), and alface's greedy k-means++
(:func:`alface.select.diversity.kmeanspp_seeds`) run once and three times (the default,
``select.kmeans_redo``). Times are the mean seconds per k-means call on these 1,000 points.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from alface.select.diversity import kmeans


def blobs(seed: int, dim: int, sep: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """(1000, dim) float32 points of ten blobs and the blob of each point."""
    rng = np.random.default_rng(seed)
    x = np.repeat(np.eye(10, dim) * sep, 100, axis=0) + spread * rng.standard_normal((1000, dim))
    return x.astype(np.float32), np.repeat(np.arange(10), 100)


def faiss_plain(x: np.ndarray, seed: int, redo: int) -> np.ndarray:
    """FAISS k-means with its k-means++ seeding, ``redo`` runs: the cluster of each point."""
    km = faiss.Kmeans(
        x.shape[1], 10, niter=20, seed=seed, nredo=redo, min_points_per_centroid=1,
        init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
    )  # fmt: skip
    km.train(x)
    return km.index.search(x, 1)[1][:, 0]


def merged(assign: np.ndarray, blob: np.ndarray) -> bool:
    """Whether a cluster holds points of more than one blob."""
    return any(len(np.unique(blob[assign == c])) > 1 for c in np.unique(assign))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    methods = {
        "faiss k-means++ x1": lambda x, s: faiss_plain(x, s, 1),
        "faiss k-means++ x3": lambda x, s: faiss_plain(x, s, 3),
        "greedy k-means++ x1": lambda x, s: kmeans(x, 10, 20, seed=s, redo=1)[0],
        "greedy k-means++ x3": lambda x, s: kmeans(x, 10, 20, seed=s, redo=3)[0],
    }
    setups = [(16, 10.0, 1.0), (16, 10.0, 0.5), (50, 10.0, 0.5), (10, 10.0, 0.3)]
    print(f"merge rate over {args.seeds} seeds (mean seconds per call)")
    for dim, sep, spread in setups:
        row = []
        for name, fn in methods.items():
            bad, spent = 0, 0.0
            for seed in range(args.seeds):
                x, blob = blobs(seed, dim, sep, spread)
                t = time.perf_counter()
                assign = fn(x, seed)
                spent += time.perf_counter() - t
                bad += merged(assign, blob)
            row.append(f"{name} {bad / args.seeds:5.1%} ({spent / args.seeds * 1e3:.1f} ms)")
        print(f"dim {dim:2d} sep {sep:4.1f} spread {spread:3.1f}: " + " | ".join(row))


if __name__ == "__main__":
    main()
