"""Uncertainty heuristics over class probabilities: one pure function each, higher = pick first.

Each heuristic maps probabilities ``(N, C)`` (numpy array or torch tensor; the result has the
same kind) to scores ``(N,)``:

- ``entropy``: ``-sum_c p_c log2 p_c`` in bits (``0 log 0 = 0``); 0 for a one-hot row,
  ``log2 C`` for a uniform one.
- ``least_confidence``: ``1 - p1``, with ``p1`` the largest probability.
- ``margin``: ``1 - (p1 - p2)``, with ``p2`` the second largest. The usual margin ``p1 - p2``
  is small for uncertain rows; it is flipped so that higher = more uncertain, as for the others.
- ``ratio``: ``p2 / p1`` (ratio of confidence); 1 when the top two tie.

:func:`uncertainty_scores` (the uncertainty scores of probability rows; not
``alface.scoring.score_pool``, which runs a model over the pool) streams a large
(memory-mapped) array through one of them in chunks, on the torch device it is given, and
checks every row. :func:`top_m` takes the M highest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from alface.errors import AlfaceError
from alface.progress import ProgressFn

log = logging.getLogger(__name__)

Array = Any  # np.ndarray or torch.Tensor
_LN2 = math.log(2.0)


class UncertaintyError(AlfaceError, ValueError):
    """Probabilities that cannot be scored (NaN/inf, out of [0, 1], rows not summing to 1)."""


def _as_tensor(probs: Array) -> tuple[torch.Tensor, bool]:
    """``probs`` as a 2-D float tensor (no copy when possible), and whether it was numpy."""
    if isinstance(probs, torch.Tensor):
        t, was_numpy = probs, False
    else:
        a = np.asarray(probs)
        if a.dtype != np.float64:
            a = a.astype(np.float32, copy=False)
        if not a.flags.writeable:
            a = a.copy()  # torch.from_numpy wants a writable buffer
        t, was_numpy = torch.from_numpy(a), True
    if not t.is_floating_point():
        t = t.float()
    if t.ndim != 2 or t.shape[1] < 2:
        raise UncertaintyError(f"probabilities must be (N, C) with C >= 2, got {tuple(t.shape)}")
    return t, was_numpy


def _back(t: torch.Tensor, was_numpy: bool) -> Array:
    return t.cpu().numpy() if was_numpy else t


def _top2(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest and second largest probability per row, each (N,); equal when tied."""
    # Not torch.topk: on CPU it is ~10x slower for a few classes.
    p1 = p.amax(dim=1, keepdim=True)
    is_top = p == p1
    p2 = torch.where(is_top, torch.full_like(p, -1.0), p).amax(dim=1)
    p2 = torch.where(is_top.sum(dim=1) > 1, p1[:, 0], p2)
    return p1[:, 0], p2


def entropy(probs: Array) -> Array:
    """Shannon entropy in bits, ``-sum p log2 p``: (N, C) -> (N,)."""
    p, was_numpy = _as_tensor(probs)
    # 0 * log(tiny) = 0 gives 0 log 0 = 0 without a branch (xlogy is ~5x slower on CPU).
    plogp = p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
    return _back(-plogp.sum(dim=1) / _LN2, was_numpy)


def least_confidence(probs: Array) -> Array:
    """``1 - max p``: (N, C) -> (N,)."""
    p, was_numpy = _as_tensor(probs)
    return _back(1.0 - p.amax(dim=1), was_numpy)


def margin(probs: Array) -> Array:
    """``1 - (p1 - p2)`` for the two largest probabilities: (N, C) -> (N,)."""
    p, was_numpy = _as_tensor(probs)
    p1, p2 = _top2(p)
    return _back(1.0 - (p1 - p2), was_numpy)


def ratio(probs: Array) -> Array:
    """``p2 / p1`` for the two largest probabilities: (N, C) -> (N,)."""
    p, was_numpy = _as_tensor(probs)
    p1, p2 = _top2(p)
    return _back(p2 / p1, was_numpy)


HEURISTICS: dict[str, Callable[[Array], Array]] = {
    "entropy": entropy,
    "least_confidence": least_confidence,
    "margin": margin,
    "ratio": ratio,
}


def get_heuristic(name: str) -> Callable[[Array], Array]:
    """The heuristic called ``name``, or an UncertaintyError listing the valid ones."""
    try:
        return HEURISTICS[name]
    except KeyError:
        raise UncertaintyError(
            f"unknown uncertainty {name!r}; choose one of {', '.join(HEURISTICS)}"
        ) from None


def bad_rows(p: torch.Tensor, atol: float = 1e-3) -> torch.Tensor:
    """Row indices (K,) of ``p`` (N, C) that are not finite, leave [0, 1] or do not sum to 1."""
    sums_ok = (p.sum(dim=1, dtype=torch.float64) - 1.0).abs() <= atol  # False for NaN/inf too
    if bool(sums_ok.all()) and float(p.amin()) >= -atol and float(p.amax()) <= 1.0 + atol:
        return torch.empty(0, dtype=torch.long, device=p.device)  # the usual case, cheaply
    in_range = ((p >= -atol) & (p <= 1.0 + atol)).all(dim=1)
    return torch.nonzero(~(sums_ok & in_range)).flatten()


def _name_items(rows: np.ndarray, ids: Sequence[Any] | None, limit: int = 5) -> str:
    """``rows`` as item ids (or row indices), at most ``limit`` of them, for one error line."""
    names = [str(ids[r]) if ids is not None else str(r) for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(names) + more


def uncertainty_scores(
    name: str,
    probs: Array,
    batch_size: int = 262_144,
    device: torch.device | str | None = None,
    ids: Sequence[Any] | None = None,
    atol: float = 1e-3,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Uncertainty scores of probability rows: heuristic ``name`` over ``probs`` (N, C),
    memmap ok, ``batch_size`` rows at a time on ``device`` (CPU when None): float32 (N,).

    Every row is checked first: NaN/inf, values outside [0, 1] or sums off 1 by more than
    ``atol`` raise UncertaintyError naming the items (``ids[row]``, else the row index).
    """
    fn = get_heuristic(name)
    if batch_size < 1:
        raise UncertaintyError(f"batch_size must be >= 1, got {batch_size}")
    n = len(probs)
    if ids is not None and len(ids) != n:
        raise UncertaintyError(f"{len(ids)} ids for {n} rows of probabilities")
    out = np.empty(n, dtype=np.float32)
    bad: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        chunk = probs[start : start + batch_size]
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.from_numpy(np.array(chunk, dtype=np.float32))
        p, _ = _as_tensor(chunk.to(device or "cpu", dtype=torch.float32))
        bad.append(bad_rows(p, atol).cpu().numpy() + start)
        out[start : start + len(p)] = fn(p.clamp(0.0, 1.0)).float().cpu().numpy()
        if progress is not None:
            progress(len(p))
    rows = np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
    if len(rows):
        raise UncertaintyError(
            f"probabilities are NaN/inf, outside [0, 1] or do not sum to 1 for "
            f"{len(rows)} item(s): {_name_items(rows, ids)}"
        )
    return out


def top_m(scores: np.ndarray, m: int, ordered: bool = True) -> np.ndarray:
    """Indices (min(m, N),) of the ``m`` highest ``scores`` (N,), highest first (``ordered``)
    or in index order; equal scores at the cut keep the lower indices."""
    scores = np.asarray(scores)
    n = len(scores)
    m = max(0, min(int(m), n))
    if m == 0:
        return np.empty(0, dtype=np.int64)
    if np.isnan(scores).any():
        raise UncertaintyError(
            "scores contain NaN; uncertainty_scores checks the probabilities first"
        )
    cut = np.partition(scores, n - m)[n - m]  # the m-th highest value
    above = np.flatnonzero(scores > cut)
    at_cut = np.flatnonzero(scores == cut)[: m - len(above)]
    chosen = np.concatenate([above, at_cut])
    if not ordered:
        return np.sort(chosen).astype(np.int64)
    order = np.lexsort((chosen, -scores[chosen].astype(np.float64)))
    return chosen[order].astype(np.int64)
