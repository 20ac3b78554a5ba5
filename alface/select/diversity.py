"""Diversity: PCA of embeddings (numpy, or torch on a GPU), k-means (FAISS, GPU or CPU), then per cluster the
items nearest the centroid, the furthest, and some at random (40/40/20 by default).

All functions are pure: the same inputs and seed give the same outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from alface.errors import AlfaceError
from alface.select.quotas import largest_remainder, split_quotas

log = logging.getLogger(__name__)

REASONS = ("near", "far", "random")
KMEANS_INITS = ("k-means++", "random")
SEED_POINTS_PER_CENTROID = 64  # k-means++ seeds are drawn from at most k x this rows


class DiversityError(AlfaceError, ValueError):
    """Inputs the diversity step cannot use (empty, wrong shape, bad fractions)."""


def _float32_2d(x: np.ndarray, what: str, row_ids: np.ndarray | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (N, D) array, N >= 1 (no copy when it already is);
    NaN/inf rows raise, named by ``row_ids`` (default: their position)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise DiversityError(f"{what} must be a non-empty (N, D) array, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x.sum(axis=1, dtype=np.float64)))  # no (N, D) temporary
    if len(bad):
        first = (bad[:5] if row_ids is None else row_ids[bad[:5]]).tolist()
        raise DiversityError(f"{what} contain NaN/inf in {len(bad)} row(s), first: {first}")
    return x


def pca_reduce(
    x: np.ndarray,
    d: int,
    sample: int = 0,
    seed: int = 0,
    rows: np.ndarray | None = None,
    chunk: int = 2048,
    device: torch.device | str | None = None,
    ids: Sequence[Any] | None = None,
) -> np.ndarray:
    """``rows`` of ``x`` (N, D; all rows when None; a memmap is fine) projected on their first
    ``d`` principal components: (len(rows), min(d, D)) float32.

    The PCA is fitted on ``sample`` of those rows drawn with ``seed`` (0: all), then applied
    ``chunk`` rows at a time, so at most (sample + chunk) rows of ``x`` are copied. With
    ``d`` >= D, or no more rows than ``d``, the rows come back unreduced (float32). With a
    torch ``device`` (a GPU) the fit and the projection run there; None: numpy on the CPU.
    NaN/inf rows raise, named by ``ids`` (N,), the item ids of ``x``'s rows (default: the
    row index).
    """
    if np.ndim(x) != 2:
        raise DiversityError(f"embeddings must be an (N, D) array, got shape {np.shape(x)}")
    if d < 1:
        raise DiversityError(f"select.pca_dims must be >= 1, got {d}")
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    names = rows if ids is None else np.asarray(ids)[rows]
    n, dim = len(rows), x.shape[1]
    d = min(d, dim)
    fit_pos: Any = slice(None)
    if 0 < sample < n:
        fit_pos = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        log.info("PCA %d -> %d fitted on a sample of %d of %d rows", dim, d, sample, n)
    fit_rows, fit_names = rows[fit_pos], names[fit_pos]
    if d == dim or len(fit_rows) <= d:
        log.info("no PCA: %d rows of %d dims, %d asked", len(fit_rows), dim, d)
        return _float32_2d(x[rows], "embeddings", names)
    fit = np.ascontiguousarray(x[fit_rows], dtype=np.float32)
    if device is not None:
        return _pca_torch(x, rows, names, fit, fit_names, d, chunk, torch.device(device))
    mean, basis = pca_fit(fit, d, fit_names)
    shift = mean @ basis  # centring after the product: no centred copy of the rows

    def project(block: np.ndarray, out: np.ndarray) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf is named by the caller
            np.matmul(block, basis, out=out)
            out -= shift

    return _project_rows(x, rows, names, d, chunk, project)


def _project_rows(
    x: np.ndarray,
    rows: np.ndarray,
    names: np.ndarray,
    d: int,
    chunk: int,
    project: Callable[[np.ndarray, np.ndarray], None],
) -> np.ndarray:
    """``project(block, out)`` over ``x[rows]``, ``chunk`` float32 rows at a time, into a
    (len(rows), d) float32 array; NaN/inf rows raise, named by ``names`` (one per row).

    Only the projection is checked: a NaN/inf input always gives a NaN/inf output, so the
    rows are read again only then (checking every input row costs as much as projecting it).
    """
    out = np.empty((len(rows), d), dtype=np.float32)
    for a in range(0, len(rows), chunk):
        block = np.ascontiguousarray(x[rows[a : a + chunk]], dtype=np.float32)
        z = out[a : a + chunk]
        project(block, z)
        if not np.isfinite(z).all():
            _float32_2d(block, "embeddings", names[a : a + chunk])  # raises on a NaN/inf row
            _overflow(np.flatnonzero(~np.isfinite(z).all(axis=1)), names[a : a + chunk])
    return out


def _overflow(bad: np.ndarray, row_ids: np.ndarray | None) -> None:
    """Raise for rows at positions ``bad`` whose finite values overflow float32 in the PCA."""
    first = (bad[:5] if row_ids is None else row_ids[bad[:5]]).tolist()
    raise DiversityError(
        f"embeddings of {len(bad)} row(s) overflow float32 in the PCA, first: {first}"
    )


def _pca_torch(
    x: np.ndarray,
    rows: np.ndarray,
    names: np.ndarray,
    fit: np.ndarray,
    fit_names: np.ndarray,
    d: int,
    chunk: int,
    device: torch.device,
) -> np.ndarray:
    """:func:`pca_reduce`'s fit (on ``fit``) and projection of ``x[rows]`` with torch on
    ``device``; the same components as :func:`pca_fit` (eigh in float64, signs fixed)."""
    t = torch.as_tensor(fit, device=device)
    mean = t.mean(dim=0, dtype=torch.float64)
    if not bool(torch.isfinite(mean).all()):
        _float32_2d(fit, "embeddings", fit_names)
    centred = t.double() - mean
    cov = centred.T @ centred / max(len(t) - 1, 1)
    basis = torch.linalg.eigh(cov)[1][:, -d:].flip(1)
    idx = basis.abs().argmax(dim=0)
    basis = (basis * torch.sign(basis[idx, torch.arange(d, device=device)])).float()
    shift = mean.float() @ basis

    def project(block: np.ndarray, out: np.ndarray) -> None:
        out[:] = (torch.as_tensor(block, device=device) @ basis - shift).cpu().numpy()

    return _project_rows(x, rows, names, d, chunk, project)


def pca_fit(
    x: np.ndarray, d: int, row_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the ``d`` leading eigenvectors (D, d) of the covariance of ``x`` (N, D),
    float32; each vector's largest entry is made positive, so the result is deterministic.
    NaN/inf rows raise, named by ``row_ids`` (default: their position)."""
    # Not faiss.PCAMatrix: its eigensolver costs ~0.2 s whatever N on this CPU, a third of
    # the whole selection for a million faces. Only the d leading pairs are solved for, on one
    # BLAS thread: threads gain nothing on a D x D problem and lose seconds on a busy machine.
    mean64 = x.mean(axis=0, dtype=np.float64)
    if not np.isfinite(mean64).all():  # a NaN/inf entry makes its column's mean NaN/inf
        _float32_2d(x, "embeddings", row_ids)
    mean = mean64.astype(np.float32)
    centred = x - mean
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is named below
        cov = (centred.T @ centred).astype(np.float64) / max(len(x) - 1, 1)
    if not np.isfinite(cov).all():
        sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)  # the rows too large to square
        bad = np.flatnonzero(sq > np.finfo(np.float32).max)
        _overflow(bad if len(bad) else np.array([sq.argmax()]), row_ids)
    dim = cov.shape[0]
    with threadpool_limits(1, user_api="blas"):
        basis = scipy.linalg.eigh(cov, subset_by_index=(dim - d, dim - 1))[1][:, ::-1]
    basis *= np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(d)])
    return mean, np.ascontiguousarray(basis, dtype=np.float32)


def kmeans(
    x: np.ndarray,
    k: int,
    iters: int,
    seed: int = 0,
    gpus: int = 0,
    points_per_centroid: int = 256,
    init: str = "k-means++",
    redo: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means (faiss.Kmeans, on ``gpus`` GPUs or CPU) of ``x`` (N, d).

    Returns assign (N,) int64 cluster ids, centroids (k', d) and dist (N,) float32, the
    Euclidean distance of each row to its centroid, with k' = min(k, N). Training uses at most
    ``points_per_centroid`` * k' rows (a sample drawn with ``seed``; 0: all rows); every row is
    then assigned. It is run ``redo`` times on that sample from different seedings and the
    run with the lowest objective is kept. ``init`` is "k-means++" (greedy D²-weighted
    seeding, :func:`kmeanspp_seeds`, over at most SEED_POINTS_PER_CENTROID * k' rows of the
    sample) or "random" (FAISS's). On ten well-separated blobs (benchmarks/kmeans_merges.py,
    200 seeds per setting) one FAISS k-means++ run merges two blobs in 5-59 % of seeds,
    three in 0-18 %, one greedy run in 0-13 %, three greedy runs (the default) in 0-0.5 %
    (0.2 % of 1,000 seeds in the hardest setting, 0 % with four). Duplicate rows are fine:
    FAISS splits clusters left empty.
    """
    x = _float32_2d(x, "points")
    n, d = x.shape
    if k < 1 or iters < 1 or redo < 1:
        raise DiversityError(
            f"k-means needs k, iters and redo >= 1, got k={k}, iters={iters}, redo={redo}"
        )
    if init not in KMEANS_INITS:
        raise DiversityError(
            f"unknown k-means init {init!r}; choose one of {', '.join(KMEANS_INITS)}"
        )
    if k > n:
        log.info("k-means: k=%d > %d points, using k=%d", k, n, n)
        k = n
    rng = np.random.default_rng(seed)
    n_train = min(n, points_per_centroid * k) if points_per_centroid > 0 else n
    sample = x if n_train == n else x[np.sort(rng.choice(n, size=n_train, replace=False))]
    best: Any = None
    for _ in range(redo):
        km = faiss.Kmeans(
            d,
            k,
            niter=iters,
            seed=int(rng.integers(2**31)),
            gpu=int(gpus) if gpus else False,
            max_points_per_centroid=n_train,  # the sample is already drawn
            min_points_per_centroid=1,  # small pools are expected; no FAISS warning on stderr
            verbose=False,
        )
        seeds = None
        if init == "k-means++":
            pool = sample
            if len(sample) > SEED_POINTS_PER_CENTROID * k:  # a cost bound: O(k^2 x this x d)
                pick = rng.choice(len(sample), size=SEED_POINTS_PER_CENTROID * k, replace=False)
                pool = sample[np.sort(pick)]
            # One BLAS thread: (N, d) x (d, ~7) products gain nothing from threads and lose
            # ~15x on a busy machine.
            with threadpool_limits(1, user_api="blas"):
                seeds = kmeanspp_seeds(pool, k, rng)
        km.train(sample, init_centroids=seeds)
        if best is None or km.obj[-1] < best.obj[-1]:
            best = km
    sq_dist, assign = best.index.search(x, 1)
    dist = np.sqrt(np.maximum(sq_dist[:, 0], 0.0)).astype(np.float32)
    return assign[:, 0].astype(np.int64), best.centroids, dist


def kmeanspp_seeds(
    x: np.ndarray, k: int, rng: np.random.Generator, trials: int | None = None
) -> np.ndarray:
    """k initial centroids (k, d) float32 picked among the rows of ``x`` (N, d), N >= k, by
    greedy k-means++ (as scikit-learn): each next seed is the best of ``trials`` (default
    2 + ln k) rows drawn with probability proportional to their squared distance to the
    nearest seed so far, best meaning the lowest total squared distance afterwards."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    trials = trials or 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", x, x)
    chosen = [int(rng.integers(n))]
    d2 = np.maximum(sq + sq[chosen[0]] - 2.0 * (x @ x[chosen[0]]), 0.0)
    for _ in range(1, k):
        cum = np.cumsum(d2, dtype=np.float64)
        if not cum[-1] > 0:  # every row sits on a seed (duplicates): any unused row will do
            rest = np.setdiff1d(np.arange(n), chosen)
            chosen += rng.choice(rest, size=k - len(chosen), replace=False).tolist()
            break
        cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1], "right"), n - 1)
        dc = sq[:, None] + sq[cand][None, :] - 2.0 * (x @ x[cand].T)  # (N, trials)
        np.minimum(dc, d2[:, None], out=dc)
        np.maximum(dc, 0.0, out=dc)
        best = int(dc.sum(axis=0, dtype=np.float64).argmin())
        chosen.append(int(cand[best]))
        d2 = dc[:, best].copy()
    return np.ascontiguousarray(x[chosen])


def pick_near_far_random(
    assign: np.ndarray,
    dist: np.ndarray,
    batch_size: int,
    fractions: Sequence[float] = (0.4, 0.4, 0.2),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Pick min(batch_size, N) distinct rows given their cluster ``assign`` (N,) and distance
    to the centroid ``dist`` (N,).

    Clusters share the batch in proportion to their size (:func:`largest_remainder`, capped at
    the cluster size). The quotas split by ``fractions`` (near, far, random) with
    :func:`split_quotas`: the whole batch is within one item of the fractions (B=20 in five
    clusters: 8/8/4) and each cluster within one of its own share (q=10 -> 4/4/2; q=5 ->
    2/2/1 or 2/1/2 ...; q=1 -> near, far or random, as the batch needs). "near" rows are the
    closest to the centroid, "far" the furthest of the others (equal distances: lower index
    first), "random" are drawn by ``rng`` (default: seed 0) from what is left.

    Returns row indices (B,) int64, cluster by cluster; a reason per row; cluster ids (B,).
    """
    assign = np.asarray(assign, dtype=np.int64)
    dist = np.asarray(dist, dtype=np.float64)
    frac = np.asarray(fractions, dtype=np.float64)
    if assign.shape != dist.shape or assign.ndim != 1:
        raise DiversityError(f"assign {assign.shape} and dist {dist.shape} must be equal (N,)")
    if frac.shape != (3,) or (frac < 0).any() or frac.sum() <= 0 or not np.isfinite(frac).all():
        raise DiversityError(
            f"near/far/random fractions must be 3 numbers >= 0, not all 0: {fractions}"
        )
    if batch_size < 1 or len(assign) == 0:
        raise DiversityError(
            f"need batch_size >= 1 and rows to pick from: {batch_size}, {len(assign)}"
        )
    rng = rng if rng is not None else np.random.default_rng(0)
    labels, sizes = np.unique(assign, return_counts=True)
    quotas = largest_remainder(batch_size, sizes, sizes)
    split = split_quotas(quotas, frac)
    # Rows cluster by cluster, nearest first; equal distances in index order.
    order = np.lexsort((np.arange(len(assign)), dist, assign))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    picks, reasons, clusters = [], [], []
    for c, (label, q) in enumerate(zip(labels, quotas, strict=True)):
        if q == 0:
            continue
        members = order[starts[c] : starts[c + 1]]
        n_near, n_far, n_rand = split[c]
        near, others = members[:n_near], members[n_near:]
        by_far = others[np.lexsort((others, -dist[others]))]
        far, rest = by_far[:n_far], np.sort(by_far[n_far:])
        rand = np.sort(rng.choice(rest, size=n_rand, replace=False)) if n_rand else rest[:0]
        for rows, why in ((near, "near"), (far, "far"), (rand, "random")):
            picks.append(rows)
            reasons += [why] * len(rows)
            clusters.append(np.full(len(rows), label, dtype=np.int64))
    return np.concatenate(picks), reasons, np.concatenate(clusters)
