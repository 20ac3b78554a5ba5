"""Time the whole selection (entropy over N x C, top M, PCA, k-means, 40/40/20 picks): alface
against the same pipeline written with scikit-learn, each in a fresh process, side by side.

    .venv/bin/python benchmarks/select_speed.py                   # N = 1,000,000, C = 7, D = 512
    .venv/bin/python benchmarks/select_speed.py --n 100000 --repeats 1
    .venv/bin/python benchmarks/select_speed.py --device cuda      # on a GPU machine

Pipelines: ``alface`` (select_batch with the default sampling: PCA fitted on pca_sample rows,
k-means trained on 256 points per centroid), ``alface-full`` (PCA and k-means on all M rows,
like scikit-learn), ``sklearn`` (numpy entropy, argpartition, sklearn PCA + KMeans with n_init=1,
the same iterations and k-means++ seeding, then the same picks) and ``sklearn-defaults`` (the
same with KMeans at scikit-learn's defaults, max_iter=300 and tol=1e-4, as most code calls it). Each worker runs with the same
threads and OMP_WAIT_POLICY. Peak memory is VmHWM of the worker process, reset after the data
are made (the data included), relative to the embedding array.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from alface.config import SelectConfig

PIPELINES = ("alface", "alface-full", "sklearn", "sklearn-defaults")


def make_data(n: int, c: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian mixture of 200 components in ``dim`` dims (float32) and softmax
    probabilities (n, c) whose confidence depends on the component; made chunk by chunk."""
    rng = np.random.default_rng(seed)
    centres = (rng.standard_normal((200, dim)) * 0.6).astype(np.float32)
    logit_means = rng.standard_normal((200, c)).astype(np.float32) * 2.5
    emb = np.empty((n, dim), dtype=np.float32)
    probs = np.empty((n, c), dtype=np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        comp = rng.integers(0, 200, b - a)
        emb[a:b] = rng.standard_normal((b - a, dim), dtype=np.float32)
        emb[a:b] += centres[comp]
        logits = logit_means[comp] + rng.standard_normal((b - a, c), dtype=np.float32)
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs[a:b] = e / e.sum(1, keepdims=True)
    return emb, probs


def _status(key: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def devices(args) -> tuple[Any, int]:
    """(torch device, FAISS GPUs) of ``args.device``: FAISS uses every GPU it sees with cuda."""
    from alface.device import faiss_gpus, torch_device

    device = torch_device(args.device)
    return device, faiss_gpus("auto") if device.type == "cuda" else 0


def run_alface(emb, probs, args, full: bool) -> dict[str, Any]:
    """The real entry point, select_batch("entropy_diversity")."""
    from alface.select import select_batch

    cfg = SelectConfig(
        top_m=args.top_m,
        pca_dims=args.pca_dims,
        n_clusters=args.k,
        kmeans_iters=args.iters,
        batch_size=args.batch,
        pca_sample=0 if full else args.pca_sample,
        kmeans_points_per_centroid=0 if full else args.points_per_centroid,
    )
    device, gpus = devices(args)
    sel = select_batch(
        "entropy_diversity", probs, emb, args.batch, cfg, seed=0, faiss_gpus=gpus, device=device
    )
    return {"picks": len(sel), "clusters": len(set(sel.clusters.tolist()))}


def run_sklearn(emb, probs, args) -> dict[str, Any]:
    """The same steps with numpy and scikit-learn (the picks reuse alface's function)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from alface.select.diversity import pick_near_far_random

    h = -(probs * np.log2(np.where(probs > 0, probs, 1.0))).sum(axis=1)
    m = int(np.ceil(args.top_m * len(h)))
    candidates = np.sort(np.argpartition(-h, m - 1)[:m])  # the top M, as fast as numpy goes
    z = PCA(n_components=args.pca_dims, random_state=0).fit_transform(emb[candidates])
    if args.worker == "sklearn-defaults":  # as most people write it: max_iter=300, tol=1e-4
        km = KMeans(args.k, random_state=0)
    else:
        km = KMeans(
            args.k, init="k-means++", n_init=1, max_iter=args.iters, tol=0.0, random_state=0
        )
    labels = km.fit_predict(z)
    dist = np.linalg.norm(z - km.cluster_centers_[labels], axis=1)
    pos, _, clusters = pick_near_far_random(
        labels, dist, args.batch, (0.4, 0.4, 0.2), np.random.default_rng(0)
    )
    return {"picks": len(pos), "clusters": len(set(clusters.tolist())), "_z": z, "_dist": dist}


def alface_stages(emb, probs, args, full: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """The alface pipeline again, stage by stage through the public functions: its PCA output
    and k-means distances (for quality) and the seconds of each stage."""
    from alface.select import kmeans, pca_reduce, pick_near_far_random, top_m, uncertainty_scores

    seeds = np.random.SeedSequence(0).generate_state(3)  # as select_batch derives them
    device, gpus = devices(args)
    stages, t = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        stages[name], t = time.perf_counter() - t, time.perf_counter()

    scores = uncertainty_scores("entropy", probs, device=device)
    lap("uncertainty")
    candidates = top_m(scores, int(np.ceil(args.top_m * len(probs))), ordered=False)
    lap("top_m")
    sample = 0 if full else args.pca_sample
    z = pca_reduce(emb, args.pca_dims, sample, int(seeds[0]), candidates, device=device)
    lap("pca")
    ppc = 0 if full else args.points_per_centroid
    assign, _, dist = kmeans(z, args.k, args.iters, int(seeds[1]), gpus, ppc)
    lap("kmeans")
    pick_near_far_random(assign, dist, args.batch, (0.4, 0.4, 0.2), np.random.default_rng(0))
    lap("picks")
    return z, dist, stages


def worker(args: argparse.Namespace) -> None:
    """Make the data, reset the peak, run one pipeline ``repeats`` times; JSON on stdout."""
    if not args.worker.startswith("sklearn"):
        import torch  # noqa: F401  (imported before the peak reset, like sklearn below)
    else:
        import sklearn.cluster  # noqa: F401
    import alface.select  # noqa: F401

    t = time.perf_counter()
    emb, probs = make_data(args.n, args.classes, args.dim)
    made_s = time.perf_counter() - t
    rss_before = _status("VmRSS")
    reset = _reset_peak()
    times, out = [], {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        if args.worker.startswith("sklearn"):
            out = run_sklearn(emb, probs, args)
        else:
            out = run_alface(emb, probs, args, full=args.worker == "alface-full")
        times.append(time.perf_counter() - t)
    peak = _status("VmHWM")
    if args.worker.startswith("sklearn"):
        z, dist = out.pop("_z"), out.pop("_dist")
    else:
        z, dist, out["stages"] = alface_stages(emb, probs, args, args.worker == "alface-full")
        device, out["faiss_gpus"] = devices(args)
        out["device"] = str(device)
    out["pca_var"] = float(z.var(axis=0, dtype=np.float64).sum())
    out["kmeans_msd"] = float((dist.astype(np.float64) ** 2).mean())
    print(
        json.dumps(
            {
                "pipeline": args.worker,
                "times": times,
                "data_s": made_s,
                "peak_reset": reset,
                "rss_before": rss_before,
                "peak": peak,
                "emb_bytes": emb.nbytes,
                **out,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--top-m", type=float, default=0.1)
    parser.add_argument("--pca-dims", type=int, default=50)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--pca-sample",
        type=int,
        default=SelectConfig.pca_sample,
        help="alface: rows the PCA is fitted on (select.pca_sample)",
    )
    parser.add_argument(
        "--points-per-centroid",
        type=int,
        default=SelectConfig.kmeans_points_per_centroid,
        help="alface: k-means training sample per centroid (select.kmeans_points_per_centroid)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch device for alface: cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per worker; 0: all")
    parser.add_argument(
        "--omp-wait",
        default="PASSIVE",
        help="OMP_WAIT_POLICY for the workers (PASSIVE: idle OpenMP threads sleep instead of "
        "spinning, which on a shared machine turns 0.5 s runs into 2-10 s ones); '' to inherit",
    )
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    results = []
    print(
        f"N={args.n:,} C={args.classes} D={args.dim} top_m={args.top_m} PCA->{args.pca_dims} "
        f"k={args.k} iters={args.iters} B={args.batch} pca_sample={args.pca_sample} "
        f"points/centroid={args.points_per_centroid}; threads={args.threads or os.cpu_count()} "
        f"OMP_WAIT_POLICY={args.omp_wait or os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
        f"device={args.device}"
    )
    for name in args.pipelines.split(","):
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", name]
        env = dict(os.environ)
        if args.omp_wait:
            env["OMP_WAIT_POLICY"] = args.omp_wait
        if args.threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(args.threads)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        res = {**json.loads(done.stdout.strip().splitlines()[-1]), "load_before": load}
        results.append(res)
        _print_row(res)
    by = {r["pipeline"]: min(r["times"]) for r in results}
    if "sklearn" in by:
        for name in (n for n in by if n != "sklearn"):
            print(
                f"speed-up of {name} over sklearn (best of runs): {by['sklearn'] / by[name]:.1f}x"
            )
    print(f"load average (1 min) now: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


def _print_row(r: dict[str, Any]) -> None:
    gb, emb = 1e9, r["emb_bytes"]
    print(
        f"{r['pipeline']:12s} best {min(r['times']):6.2f} s  median {statistics.median(r['times']):6.2f} s"
        f"  runs {' '.join(f'{t:.2f}' for t in r['times'])}  picks {r['picks']} from {r['clusters']} clusters"
        f"  | peak RSS {r['peak'] / gb:.2f} GB = {r['peak'] / emb:.2f}x embeddings"
        f" (+{(r['peak'] - r['rss_before']) / gb:.2f} GB over the data, reset={r['peak_reset']})"
        f"  | load before {r['load_before']:.2f}"
        f"  | PCA variance kept {r['pca_var']:.1f}, k-means mean sq. dist {r['kmeans_msd']:.2f}"
    )
    if "stages" in r:
        print(
            "  stages (one more run): "
            + ", ".join(f"{k} {v:.3f} s" for k, v in r["stages"].items())
        )


if __name__ == "__main__":
    main()
