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

With ``groups`` (a person group per row: track and near-duplicates merged), every strategy
takes at most ``select.max_per_group`` rows of a group, and the batch is still B whenever the
groups allow B rows. How each keeps the cap: ``random`` walks a random permutation and skips
rows of full groups; ``uncertainty`` walks the scores down the same way; ``diversity``
clusters one random row per group (up to the cap) instead of every row; the method keeps the
most uncertain rows of each group (up to the cap), takes the top M of those (``top_m`` is a
share of them), then clusters. So a person seen in 500 frames counts once in the clusters'
sizes. With fewer allowed rows than B (few groups), the batch is all of them, smaller than B,
and :attr:`Selection.message` says so; the next batch can take the groups again.
"""

from __future__ import annotations

import functools
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
from alface.select.groups import cap_per_group, check_groups, group_capacity
from alface.select.uncertainty import top_m, uncertainty_scores

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
    """What a strategy sees: the pool's arrays and the settings of one call.

    A strategy must take at most ``max_per_group`` rows of a ``groups`` value (when groups
    are given); :meth:`capped` walks rows in preference order and does it.
    """

    probs: Any  # (N, C) probabilities or None; numpy, memmap or torch
    embeddings: Any  # (N, D) or None; numpy or memmap
    n: int
    batch_size: int  # already min(B, N, rows the group cap allows)
    cfg: SelectConfig
    seed: int
    faiss_gpus: int
    device: torch.device | str | None
    ids: Sequence[Any] | None
    groups: np.ndarray | None = None  # (N,) int64 person group of each row, or None
    max_per_group: int = 1

    @functools.cached_property
    def scores_all(self) -> np.ndarray:
        """``cfg.uncertainty`` over the whole pool, every row checked: float32 (N,); computed
        once per call."""
        return uncertainty_scores(
            self.cfg.uncertainty, self.probs, self.cfg.uncertainty_chunk, self.device, self.ids
        )

    def scores(self) -> np.ndarray:
        """``cfg.uncertainty`` over the whole pool: float32 (N,)."""
        return self.scores_all

    def seeds(self) -> np.ndarray:
        """Three independent seeds (PCA sample, k-means, picks) derived from ``seed``."""
        return np.random.SeedSequence(self.seed).generate_state(3)

    def capped(self, order: np.ndarray, n: int | None = None) -> np.ndarray:
        """The first ``n`` rows of ``order`` (best first) with at most ``max_per_group`` per
        group (all of ``order``'s first n without groups): int64, in preference order."""
        order = np.asarray(order, dtype=np.int64)
        if self.groups is None:
            return order if n is None else order[:n]
        return cap_per_group(order, self.groups, self.max_per_group, n)

    def group_rng(self) -> np.random.Generator:
        """The generator that picks which rows of a group stand for it (a fourth seed)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed).generate_state(4)[3])


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
    names the inputs it cannot do without ("probs", "embeddings"). ``fn`` must keep the
    group cap (:class:`Pool`); select_batch refuses a batch that breaks it."""

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
    groups: np.ndarray | None = None,
) -> Selection:
    """Pick min(batch_size, N) distinct rows of a pool of N with strategy ``name`` (fewer when
    ``groups`` allow fewer).

    Args:
        probs: (N, C) class probabilities (None for strategies that need none). When given,
            every row is checked (NaN/inf, range, sums) whatever the strategy.
        embeddings: (N, D) embeddings (None for strategies that need none).
        batch_size: B; when B >= N the whole pool is taken and the message says so.
        cfg: the select section of the config (uncertainty, top_m, PCA, k-means, 40/40/20,
            max_per_group).
        seed: the same seed gives the same batch.
        faiss_gpus: GPUs for k-means (alface.device.faiss_gpus); 0: CPU.
        device: torch device for the uncertainty pass (alface.device.torch_device); None: CPU.
        ids: item ids (N,) used to name bad rows in errors.
        groups: (N,) int person group of each row (negative: a group alone), or None: at
            most ``cfg.max_per_group`` rows of a group are taken; the batch is smaller than
            B only when the groups allow fewer rows, and the message says so.
    """
    entry = _entry(name)
    n = _pool_size(entry, probs, embeddings, ids)
    if batch_size < 1:
        raise SelectionError(f"batch size must be >= 1, got {batch_size}")
    if cfg.max_per_group < 1:
        raise SelectionError(f"select.max_per_group must be >= 1, got {cfg.max_per_group}")
    room = n
    if groups is not None:
        groups = _groups(groups, n)
        room = group_capacity(groups, cfg.max_per_group)
    message = ""
    if batch_size >= n and room == n:
        message = f"batch {batch_size} >= pool {n}: took the whole pool"
    elif batch_size > room:
        message = (
            f"{room} faces allowed at select.max_per_group={cfg.max_per_group} in "
            f"{len(np.unique(groups))} groups of a pool of {n}: batch of {room}, not {batch_size}"
        )
    if message:
        log.info(message)
    pool = Pool(
        probs, embeddings, n, min(batch_size, room), cfg, seed, faiss_gpus, device, ids,
        groups, cfg.max_per_group,
    )  # fmt: skip
    scores = pool.scores_all if probs is not None else None  # checks every row, always
    indices, reasons, clusters, picked_scores = entry.fn(pool)
    indices = np.asarray(indices, dtype=np.int64)
    if groups is not None:
        _check_cap(entry.name, indices, groups, cfg.max_per_group)
    if picked_scores is None:
        picked_scores = (
            scores[indices] if scores is not None else np.full(len(indices), np.nan, np.float32)
        )
    log.info("%s picked %d of %d", entry.name, len(indices), n)
    return Selection(
        indices,
        tuple(reasons),
        np.asarray(clusters, dtype=np.int64),
        np.asarray(picked_scores, dtype=np.float32),
        entry.name,
        message,
    )


def _groups(groups: np.ndarray, n: int) -> np.ndarray:
    """``groups`` checked against the pool size: (n,) int64."""
    try:
        return check_groups(groups, n)
    except AlfaceError as e:
        raise SelectionError(str(e)) from None


def _check_cap(name: str, indices: np.ndarray, groups: np.ndarray, cap: int) -> None:
    """Raise when a strategy's batch holds more than ``cap`` rows of one group."""
    _, counts = np.unique(groups[indices], return_counts=True)
    if len(counts) and counts.max() > cap:
        raise SelectionError(
            f"strategy {name!r} took {counts.max()} faces of one group; "
            f"select.max_per_group allows {cap} (use Pool.capped)"
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
        cfg.kmeans_redo,
    )
    pos, reasons, clusters = pick_near_far_random(
        assign,
        dist,
        pool.batch_size,
        (cfg.near, cfg.far, cfg.random),
        np.random.default_rng(pick_seed),
    )
    return (pos if rows is None else rows[pos]), reasons, clusters


def _by_score(scores: np.ndarray) -> np.ndarray:
    """Every row, highest score first (equal scores: lower index first)."""
    return top_m(scores, len(scores))


@register_strategy("random")
def _random(pool: Pool) -> Picked:
    rng = np.random.default_rng(pool.seed)
    if pool.groups is None:
        picks = rng.choice(pool.n, size=pool.batch_size, replace=False)
    else:  # uniform over faces, skipping the faces of groups already in the batch
        picks = pool.capped(rng.permutation(pool.n), pool.batch_size)
    return picks, ["random-baseline"] * len(picks), np.full(len(picks), -1), None


@register_strategy("uncertainty", aliases=("entropy",), needs=("probs",))
def _uncertainty(pool: Pool) -> Picked:
    scores = pool.scores()
    if pool.groups is None:
        picks = top_m(scores, pool.batch_size)
    else:
        picks = pool.capped(_by_score(scores), pool.batch_size)
    return picks, ["uncertain"] * len(picks), np.full(len(picks), -1), scores[picks]


@register_strategy("diversity", needs=("embeddings",))
def _diversity(pool: Pool) -> Picked:
    rows = None
    if pool.groups is not None:  # up to the cap of random rows per group stand for it
        rows = np.sort(pool.capped(pool.group_rng().permutation(pool.n)))
    picks, reasons, clusters = _cluster_pick(pool, rows)
    return picks, reasons, clusters, None


@register_strategy(
    "uncertainty_diversity", aliases=("entropy_diversity",), needs=("probs", "embeddings")
)
def _uncertainty_diversity(pool: Pool) -> Picked:
    scores = pool.scores()
    if pool.groups is None:
        m = resolve_top_m(pool.cfg.top_m, pool.n, pool.batch_size)
        candidates = top_m(scores, m, ordered=False)
        of = pool.n
    else:  # the most uncertain rows of each group, up to the cap; top M of those
        allowed = pool.capped(_by_score(scores))
        m = resolve_top_m(pool.cfg.top_m, len(allowed), pool.batch_size)
        candidates, of = np.sort(allowed[:m]), len(allowed)
    # Index order: a memory-mapped array is then read front to back.
    log.info("diversity over the %d most uncertain of %d (%s)", m, of, pool.cfg.uncertainty)
    picks, reasons, clusters = _cluster_pick(pool, candidates)
    return picks, reasons, clusters, scores[picks]
