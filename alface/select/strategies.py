"""Selection strategies by name: a registry and :func:`select_batch`, the one entry point.

Registered names (aliases in brackets):

- ``random`` - the baseline: B items drawn uniformly.
- ``uncertainty`` [``entropy``] - the B highest scores of ``select.uncertainty`` (entropy by
  default; least_confidence, margin or ratio when set).
- ``diversity`` - PCA + k-means over the whole pool, 40/40/20 per cluster; no uncertainty.
- ``uncertainty_diversity`` [``entropy_diversity``] - the method: the top M by
  ``select.uncertainty``, then PCA + k-means + 40/40/20 on those M.

The ``entropy*`` aliases are the method's names (and the benchmark's); like the canonical names
they score with ``select.uncertainty``. Indices in a :class:`Selection` are positions in the
arrays given to :func:`select_batch` (rows of the pool as passed), not store item ids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alface.config import SelectConfig
from alface.errors import AlfaceError
from alface.select.diversity import kmeans, pca_reduce, pick_near_far_random
from alface.select.uncertainty import score_pool, top_m

log = logging.getLogger(__name__)


class SelectionError(AlfaceError, ValueError):
    """A selection that cannot run (unknown strategy, missing inputs, bad sizes)."""


class PoolExhaustedError(SelectionError):
    """The unlabeled pool is empty: nothing is left to select."""


@dataclass(frozen=True, eq=False)
class Selection:
    """A batch picked from a pool; every array is (B,) and row-aligned."""

    indices: np.ndarray  # int64 positions in the arrays given to select_batch
    reasons: tuple[str, ...]  # near | far | random | uncertain | random-baseline
    clusters: np.ndarray  # int64 k-means cluster, -1 for strategies without clusters
    scores: np.ndarray  # float32 select.uncertainty score, NaN without probabilities
    strategy: str  # the canonical name
    message: str = ""  # what the user should know, e.g. the batch took the whole pool

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Pool:
    """What a strategy sees: the pool's arrays and the settings of one call."""

    probs: Any  # (N, C) probabilities or None; numpy, memmap or torch
    embeddings: Any  # (N, D) or None; numpy or memmap
    n: int
    batch_size: int  # already min(B, N)
    cfg: SelectConfig
    seed: int
    faiss_gpus: int
    device: torch.device | str | None
    ids: Sequence[Any] | None

    def scores(self) -> np.ndarray:
        """``cfg.uncertainty`` over the whole pool: float32 (N,)."""
        return score_pool(
            self.cfg.uncertainty, self.probs, self.cfg.uncertainty_chunk, self.device, self.ids
        )

    def seeds(self) -> np.ndarray:
        """Three independent seeds (PCA sample, k-means, picks) derived from ``seed``."""
        return np.random.SeedSequence(self.seed).generate_state(3)


# A strategy returns indices (B,), reasons, clusters (B,) and scores (B,) or None.
Picked = tuple[np.ndarray, list[str], np.ndarray, np.ndarray | None]
StrategyFn = Callable[[Pool], Picked]


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: StrategyFn
    needs: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}


def register_strategy(
    name: str, aliases: Sequence[str] = (), needs: Sequence[str] = ()
) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator: register ``fn(pool) -> Picked`` as ``name`` (and ``aliases``); ``needs``
    names the inputs it cannot do without ("probs", "embeddings")."""

    def wrap(fn: StrategyFn) -> StrategyFn:
        entry = _Entry(name, fn, tuple(needs))
        for key in (name, *aliases):
            if key in _REGISTRY:
                raise SelectionError(f"strategy {key!r} is registered twice")
            _REGISTRY[key] = entry
        return fn

    return wrap


def list_strategies() -> list[str]:
    """Every registered name, aliases included, sorted."""
    return sorted(_REGISTRY)


def get_strategy(name: str) -> StrategyFn:
    """The strategy registered as ``name``, or a SelectionError listing the valid names."""
    return _entry(name).fn


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SelectionError(
            f"unknown selection strategy {name!r}; choose one of {', '.join(list_strategies())}"
        ) from None


def resolve_top_m(top: float, n: int, batch_size: int) -> int:
    """M for ``select.top_m`` (<= 1: a fraction of ``n``, rounded up; > 1: a count), clamped
    to [min(batch_size, n), n] so that the diversity step always has a full batch to pick."""
    if not top > 0:
        raise SelectionError(f"select.top_m must be > 0 (a fraction <= 1 or a count), got {top}")
    if top > 1 and float(top) != int(top):
        raise SelectionError(f"select.top_m > 1 is a count and must be whole, got {top}")
    m = math.ceil(top * n - 1e-9) if top <= 1 else int(top)
    return min(n, max(m, min(batch_size, n)))


def select_batch(
    name: str,
    probs: Any,
    embeddings: Any,
    batch_size: int,
    cfg: SelectConfig,
    seed: int,
    faiss_gpus: int = 0,
    device: torch.device | str | None = None,
    ids: Sequence[Any] | None = None,
) -> Selection:
    """Pick min(batch_size, N) distinct rows of a pool of N with strategy ``name``.

    Args:
        probs: (N, C) class probabilities (None for strategies that need none).
        embeddings: (N, D) embeddings (None for strategies that need none).
        batch_size: B; when B >= N the whole pool is taken and the message says so.
        cfg: the select section of the config (uncertainty, top_m, PCA, k-means, 40/40/20).
        seed: the same seed gives the same batch.
        faiss_gpus: GPUs for k-means (alface.device.faiss_gpus); 0: CPU.
        device: torch device for the uncertainty pass (alface.device.torch_device); None: CPU.
        ids: item ids (N,) used to name bad rows in errors.
    """
    entry = _entry(name)
    n = _pool_size(entry, probs, embeddings, ids)
    if batch_size < 1:
        raise SelectionError(f"batch size must be >= 1, got {batch_size}")
    message = ""
    if batch_size >= n:
        message = f"batch {batch_size} >= pool {n}: took the whole pool"
        log.info(message)
    pool = Pool(probs, embeddings, n, min(batch_size, n), cfg, seed, faiss_gpus, device, ids)
    indices, reasons, clusters, scores = entry.fn(pool)
    if scores is None:
        scores = _scores_of(pool, indices)
    log.info("%s picked %d of %d", entry.name, len(indices), n)
    return Selection(
        np.asarray(indices, dtype=np.int64),
        tuple(reasons),
        np.asarray(clusters, dtype=np.int64),
        np.asarray(scores, dtype=np.float32),
        entry.name,
        message,
    )


def _pool_size(entry: _Entry, probs: Any, embeddings: Any, ids: Sequence[Any] | None) -> int:
    """N, after checking that the given arrays agree and the strategy has what it needs."""
    given = {"probs": probs, "embeddings": embeddings}
    for need in entry.needs:
        if given[need] is None:
            raise SelectionError(f"strategy {entry.name!r} needs {need}, got None")
    sizes = {k: len(v) for k, v in given.items() if v is not None}
    if ids is not None:
        sizes["ids"] = len(ids)
    if not sizes:
        raise SelectionError("select_batch needs probs or embeddings to know the pool")
    if len(set(sizes.values())) > 1:
        raise SelectionError(f"pool arrays disagree in length: {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise PoolExhaustedError(
            "the unlabeled pool is empty: nothing left to select (add faces with alface "
            "preprocess, or stop)"
        )
    return n


def _scores_of(pool: Pool, indices: np.ndarray) -> np.ndarray:
    """``cfg.uncertainty`` of the picked rows, or NaN without probabilities."""
    if pool.probs is None:
        return np.full(len(indices), np.nan, dtype=np.float32)
    rows = np.sort(indices)
    ids = None if pool.ids is None else [pool.ids[i] for i in rows]
    scored = score_pool(
        pool.cfg.uncertainty, pool.probs[rows], pool.cfg.uncertainty_chunk, pool.device, ids
    )
    return scored[np.searchsorted(rows, indices)]


def _cluster_pick(pool: Pool, rows: np.ndarray | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """PCA + k-means + near/far/random over ``rows`` of the embeddings (None: all)."""
    cfg = pool.cfg
    pca_seed, km_seed, pick_seed = pool.seeds()
    gpu = pool.device is not None and torch.device(pool.device).type == "cuda"
    z = pca_reduce(pool.embeddings, cfg.pca_dims, cfg.pca_sample, int(pca_seed), rows,
                   device=pool.device if gpu else None, ids=pool.ids)  # fmt: skip
    assign, _, dist = kmeans(
        z,
        cfg.n_clusters,
        cfg.kmeans_iters,
        int(km_seed),
        pool.faiss_gpus,
        cfg.kmeans_points_per_centroid,
        cfg.kmeans_init,
    )
    pos, reasons, clusters = pick_near_far_random(
        assign,
        dist,
        pool.batch_size,
        (cfg.near, cfg.far, cfg.random),
        np.random.default_rng(pick_seed),
    )
    return (pos if rows is None else rows[pos]), reasons, clusters


@register_strategy("random")
def _random(pool: Pool) -> Picked:
    rng = np.random.default_rng(pool.seed)
    picks = rng.choice(pool.n, size=pool.batch_size, replace=False)
    return picks, ["random-baseline"] * len(picks), np.full(len(picks), -1), None


@register_strategy("uncertainty", aliases=("entropy",), needs=("probs",))
def _uncertainty(pool: Pool) -> Picked:
    scores = pool.scores()
    picks = top_m(scores, pool.batch_size)
    return picks, ["uncertain"] * len(picks), np.full(len(picks), -1), scores[picks]


@register_strategy("diversity", needs=("embeddings",))
def _diversity(pool: Pool) -> Picked:
    picks, reasons, clusters = _cluster_pick(pool, None)
    return picks, reasons, clusters, None


@register_strategy(
    "uncertainty_diversity", aliases=("entropy_diversity",), needs=("probs", "embeddings")
)
def _uncertainty_diversity(pool: Pool) -> Picked:
    scores = pool.scores()
    m = resolve_top_m(pool.cfg.top_m, pool.n, pool.batch_size)
    # Index order: a memory-mapped array is then read front to back.
    candidates = top_m(scores, m, ordered=False)
    log.info("diversity over the %d most uncertain of %d (%s)", m, pool.n, pool.cfg.uncertainty)
    picks, reasons, clusters = _cluster_pick(pool, candidates)
    return picks, reasons, clusters, scores[picks]
