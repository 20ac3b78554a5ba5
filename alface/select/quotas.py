"""Integer shares: a total split in proportion to weights (largest remainders), and a batch's
cluster quotas split over near/far/random so that the whole batch keeps the proportions.

Pure integer maths, no randomness: ties go to the lower index (or to the lower ``tiebreak``
key, which a caller may draw at random).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def largest_remainder(
    total: int,
    weights: Sequence[float],
    caps: Sequence[int],
    tiebreak: Sequence[float] | None = None,
) -> np.ndarray:
    """Integers (K,) summing to min(total, sum(caps)), proportional to ``weights``, each at most
    its cap.

    Floors first, then one more each to the largest remainders (ties: lower ``tiebreak`` key,
    default the index); what a capped entry cannot take is shared again among the others.
    Zero-weight entries get something only when the others are full.
    """
    w = np.asarray(weights, dtype=np.float64)
    caps_ = np.asarray(caps, dtype=np.int64)
    out = np.zeros(len(w), dtype=np.int64)
    left = min(int(total), int(caps_.sum()))
    while left > 0:
        room = caps_ - out
        share = np.where(room > 0, w, 0.0)
        if share.sum() <= 0:
            share = (room > 0).astype(np.float64)
        exact = left * share / share.sum()
        add = np.minimum(np.floor(exact).astype(np.int64), room)
        rest = left - int(add.sum())
        order = np.arange(len(w)) if tiebreak is None else np.asarray(tiebreak)
        for i in np.lexsort((order, -(exact - np.floor(exact)))):
            if rest == 0:
                break
            if add[i] < room[i] and share[i] > 0:
                add[i] += 1
                rest -= 1
        out += add
        left -= int(add.sum())
    return out


def split_quotas(quotas: Sequence[int], fractions: Sequence[float]) -> np.ndarray:
    """Split each cluster's quota (K,) over R reasons in proportion to ``fractions`` (R,):
    (K, R) int64 with row sums = ``quotas``.

    The column sums are the whole batch's split, :func:`largest_remainder` of sum(quotas), so
    the batch is within one item of ``fractions`` (B = 20 in 5 clusters of 4: 8/8/4, not the
    10/5/5 that rounding each cluster alone gives when near wins every tie). Each cell is
    its exact share rounded down or up: every cluster's floors first, then the leftover units
    go to the cells with the largest remainders (ties: lower cluster, then lower reason)
    while the cluster and the reason both still need one, and an alternating path moves
    units between clusters for those that are left.
    """
    q = np.asarray(quotas, dtype=np.int64)
    w = np.asarray(fractions, dtype=np.float64)
    exact = q[:, None] * (w / w.sum())[None, :]
    out = np.floor(exact + 1e-9).astype(np.int64)
    rem = np.where(exact - out > 1e-9, exact - out, 0.0)
    total = int(q.sum())
    row_need = q - out.sum(axis=1)
    col_need = largest_remainder(total, w, [total] * len(w)) - out.sum(axis=0)
    extra = np.zeros_like(out)
    cells = np.argwhere(rem > 0)
    order = np.lexsort((cells[:, 1], cells[:, 0], -rem[cells[:, 0], cells[:, 1]]))
    for c, r in cells[order]:
        if row_need[c] > 0 and col_need[r] > 0:
            extra[c, r] = 1
            row_need[c] -= 1
            col_need[r] -= 1
    for c in np.flatnonzero(row_need > 0):
        while row_need[c] > 0:
            end = _augment(int(c), extra, rem > 0, col_need)
            if end is None:  # no path through the allowed cells: any reason that needs one
                end = int(np.flatnonzero(col_need > 0)[0])
                extra[c, end] += 1
                log.debug("split_quotas: cluster %d takes reason %d outside its rounding", c, end)
            row_need[c] -= 1
            col_need[end] -= 1
    return out + extra


def _augment(
    start: int, extra: np.ndarray, allowed: np.ndarray, col_need: np.ndarray
) -> int | None:
    """Give row ``start`` one more unit along an alternating path (add a unit to an allowed
    empty cell, take one from another row's filled cell in that column, ...) ending in a
    column that still needs one; returns that column, or None when there is no such path."""
    rows, cols = extra.shape
    came_to_col: dict[int, int] = {}
    came_to_row: dict[int, int] = {start: -1}
    frontier = [start]
    while frontier:
        nxt = []
        for c in frontier:
            for r in range(cols):
                if not allowed[c, r] or extra[c, r] or r in came_to_col:
                    continue
                came_to_col[r] = c
                if col_need[r] > 0:
                    end = r
                    while True:  # walk back: add on the way in, remove on the way out
                        row = came_to_col[r]
                        extra[row, r] = 1
                        if row == start:
                            return end
                        r = came_to_row[row]
                        extra[row, r] = 0
                for c2 in np.flatnonzero(extra[:, r]):
                    if int(c2) not in came_to_row:
                        came_to_row[int(c2)] = r
                        nxt.append(int(c2))
        frontier = nxt
    return None
