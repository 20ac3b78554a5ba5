"""Draws that spread over people: at most k faces of a group, or whole groups only.

A group is a person as far as the tool can tell: a face track, near-duplicates, or both
merged (``alface.faces.groups.person_groups``). Selection takes at most
``select.max_per_group`` faces of a group per batch (:func:`cap_per_group`); a sample that is
labeled for evaluation (itval) can take at most k per group (:func:`sample_capped`); a split
that must not share a person with training (val, overfit, a benchmark's test split) takes
whole groups (:func:`sample_whole_groups`). Pure: the same inputs and ``rng`` state give the
same rows. Negative group ids mean "no group": each such row is a group alone.
"""

from __future__ import annotations

import numpy as np

from alface.errors import AlfaceError
from alface.select.quotas import largest_remainder


class GroupSampleError(AlfaceError, ValueError):
    """A group-aware draw that cannot be made (bad sizes, rows outside the pool)."""


def check_groups(groups: np.ndarray, n: int) -> np.ndarray:
    """``groups`` as (n,) int64 with every negative id replaced by a fresh one of its own."""
    g = np.asarray(groups)
    if g.shape != (n,) or (n and not np.issubdtype(g.dtype, np.integer)):
        raise GroupSampleError(
            f"groups must be an int array of shape ({n},), got {g.dtype} {g.shape}"
        )
    g = g.astype(np.int64)
    alone = g < 0
    if alone.any():
        g = g.copy()
        g[alone] = (g.max(initial=-1) + 1) + np.arange(int(alone.sum()))
    return g


def cap_per_group(
    order: np.ndarray, groups: np.ndarray, k: int, n: int | None = None
) -> np.ndarray:
    """The first ``n`` rows of ``order`` (rows by preference, best first) taking at most ``k``
    of each group: int64 (<= n,), in preference order; ``n`` None: every row the cap allows.

    ``groups`` (N,) holds the group of each row of the pool; ``order`` any rows of it.
    """
    if k < 1:
        raise GroupSampleError(f"select.max_per_group must be >= 1, got {k}")
    order = np.asarray(order, dtype=np.int64)
    g = check_groups(groups, len(groups))
    if len(order) and (order.min() < 0 or order.max() >= len(g)):
        raise GroupSampleError(f"order names rows outside [0, {len(g)})")
    mine = g[order]
    by_group = np.argsort(mine, kind="stable")  # within a group, preference order is kept
    sorted_g = mine[by_group]
    run_start = np.flatnonzero(np.r_[True, sorted_g[1:] != sorted_g[:-1]])
    rank = np.arange(len(order)) - np.repeat(run_start, np.diff(np.r_[run_start, len(order)]))
    seen = np.empty(len(order), dtype=np.int64)
    seen[by_group] = rank  # how many rows of its group come before each row in ``order``
    kept = order[seen < k]
    return kept if n is None else kept[:n]


def group_capacity(groups: np.ndarray, k: int) -> int:
    """How many rows a draw with at most ``k`` per group can take from ``groups`` (N,)."""
    g = check_groups(groups, len(groups))
    _, sizes = np.unique(g, return_counts=True)
    return int(np.minimum(sizes, k).sum())


def all_alone(groups: np.ndarray) -> bool:
    """Whether every row of ``groups`` (N,) is a group of its own (grouping changes nothing)."""
    g = check_groups(groups, len(groups))
    return len(np.unique(g)) == len(g)


def sample_uniform_capped(
    groups: np.ndarray, n: int, rng: np.random.Generator, k: int = 1
) -> np.ndarray:
    """``n`` rows drawn uniformly, at most ``k`` per group: sorted int64 (<= n,) (fewer when
    the groups allow fewer). With every row alone, the plain draw
    ``rng.choice(N, n, replace=False)``, so that grouping changes no draw it need not."""
    n = min(n, len(groups))
    if all_alone(groups):
        return np.sort(rng.choice(len(groups), size=n, replace=False)).astype(np.int64)
    return np.sort(cap_per_group(rng.permutation(len(groups)), groups, k, n))


def sample_capped(
    strata: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator, k: int = 1
) -> np.ndarray:
    """``n`` rows, at most ``k`` per group, proportional over ``strata`` (N,) (labels or
    k-means clusters): sorted int64 (n,).

    Each group's rows are first thinned to ``k`` drawn at random; the strata then share
    ``n`` in proportion to what is left (largest remainders), so a person seen in 500 frames
    weighs as much as one seen once. Raises when fewer than ``n`` rows are allowed.
    """
    strata = np.asarray(strata)
    if strata.shape != np.shape(groups):
        raise GroupSampleError(f"strata {strata.shape} and groups {np.shape(groups)} differ")
    allowed = np.sort(cap_per_group(rng.permutation(len(strata)), groups, k))
    if not 0 <= n <= len(allowed):
        raise GroupSampleError(
            f"cannot draw {n} faces at most {k} per group: {len(allowed)} allowed"
        )
    kinds, inverse = np.unique(strata[allowed], return_inverse=True)
    counts = np.bincount(inverse, minlength=len(kinds))
    shares = largest_remainder(n, counts, counts)
    picked = [
        rng.choice(allowed[inverse == s], size=int(m), replace=False)
        for s, m in enumerate(shares)
        if m
    ]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def sample_whole_groups(
    strata: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """About ``n`` rows made of whole groups, proportional over ``strata`` (N,): sorted int64.

    A group counts in the stratum most of its rows have (ties: the lower one). Strata get
    their share of ``n`` by largest remainders over the rows; within one, groups are taken
    in random order when they bring the total closer to the share, so each stratum ends
    within half its largest group of its share. No group is ever split.
    """
    strata = np.asarray(strata)
    if strata.shape != np.shape(groups):
        raise GroupSampleError(f"strata {strata.shape} and groups {np.shape(groups)} differ")
    if not 0 <= n <= len(strata):
        raise GroupSampleError(f"cannot draw {n} of {len(strata)} faces")
    g = check_groups(groups, len(strata))
    ids, gi = np.unique(g, return_inverse=True)
    kinds, si = np.unique(strata, return_inverse=True)
    table = np.zeros((len(ids), len(kinds)), dtype=np.int64)
    np.add.at(table, (gi, si), 1)
    group_stratum, sizes = table.argmax(axis=1), table.sum(axis=1)
    per_stratum = np.bincount(group_stratum, weights=sizes, minlength=len(kinds)).astype(np.int64)
    targets = largest_remainder(n, per_stratum, per_stratum)
    chosen = np.zeros(len(ids), dtype=bool)
    for s, target in enumerate(targets):
        total = 0
        for grp in rng.permutation(np.flatnonzero(group_stratum == s)):
            if abs(total + sizes[grp] - target) < abs(total - target):
                chosen[grp] = True
                total += sizes[grp]
    return np.flatnonzero(chosen[gi]).astype(np.int64)
