"""Share estimators over a classifier's outputs: raw counts, adjusted and probabilistic adjusted
counts, and the checks on their inputs (see :mod:`alface.audit.quantify` for the audit that
combines them with bootstrap intervals and diagnostics).

- ``raw`` (classify and count): the weighted share of faces whose most probable class is k
  with a probability of at least ``threshold``; the rest are *uncertain*, reported apart,
  never forced into a group. Biased whenever the classifier errs.
- ``acc`` (adjusted classify and count, Forman 2008): the observed shares ``q`` (K+1,) of the
  predicted categories (K groups + uncertain) are ``M p``, with ``p`` (K,) the true shares and
  ``M`` (K+1, K) the rates ``P(predicted c | true j)`` measured on held-out labeled faces.
- ``pacc`` (probabilistic adjusted count, Bella et al. 2010): the same with probabilities:
  ``q`` the weighted mean probability vector (K,), ``M[:, j]`` the mean probabilities of the
  held-out faces of class j.

The adjustment solves ``min ||M p - q||^2`` over the simplex (``p >= 0``, ``sum p = 1``), never
``M^-1 q``, which leaves [0, 1] when ``M`` is noisy.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from alface.errors import AlfaceError

DEFAULT_THRESHOLD = 0.5  # below it a face is "uncertain" in the raw counts and in acc


class QuantifyError(AlfaceError, ValueError):
    """Probabilities, labels or weights that the share estimators cannot use."""


# -- checks -------------------------------------------------------------------------------------
def check_probs(probs: np.ndarray, what: str = "probabilities") -> np.ndarray:
    """``probs`` as finite float64 (N, K), K >= 2, or a QuantifyError naming ``what``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not np.isfinite(p).all():
        raise QuantifyError(f"{what} must be finite (N, K) with K >= 2, got shape {p.shape}")
    return p


def check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """(n,) float64 weights (ones for None), finite, >= 0, not all 0."""
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or (n and w.sum() <= 0):
        raise QuantifyError(f"weights must be ({n},) finite, >= 0 and not all 0")
    return w


def check_targets(targets: np.ndarray, n: int, k: int) -> np.ndarray:
    """(n,) int64 class indices in 0..k-1."""
    t = np.asarray(targets)
    if t.shape != (n,) or (n and (not np.issubdtype(t.dtype, np.integer) or t.min() < 0
                                  or t.max() >= k)):  # fmt: skip
        raise QuantifyError(f"held-out labels must be ({n},) class indices in 0..{k - 1}")
    return t.astype(np.int64)


# -- the estimators -----------------------------------------------------------------------------
def predicted_categories(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) the argmax of ``probs`` (N, K), or K (uncertain) where the largest is < threshold
    (K = 0, no classes, as `alface predict --detect-only`: all K)."""
    if probs.shape[1] == 0:
        return np.zeros(len(probs), dtype=np.int64)
    return np.where(probs.max(axis=1) >= threshold, probs.argmax(axis=1), probs.shape[1])


def category_shares(probs: np.ndarray, weights: np.ndarray, threshold: float) -> np.ndarray:
    """(K+1,) weighted shares of the predicted categories (the last: uncertain)."""
    cats = predicted_categories(probs, threshold)
    return np.bincount(cats, weights, minlength=probs.shape[1] + 1) / weights.sum()


def hard_rates(probs: np.ndarray, targets: np.ndarray, threshold: float) -> np.ndarray:
    """(K+1, K) ``P(predicted category c | true class j)`` of held-out ``probs`` (M, K) with
    ``targets`` (M,); a class without held-out faces has a column of NaN."""
    k = probs.shape[1]
    cats = predicted_categories(probs, threshold)
    counts = np.zeros((k + 1, k))
    np.add.at(counts, (cats, targets), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=0)


def soft_rates(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K, K) mean probabilities (rows) of the held-out faces of each true class (columns)."""
    k = probs.shape[1]
    sums = np.zeros((k, k))
    np.add.at(sums.T, targets, probs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / np.bincount(targets, minlength=k)


def solve_simplex(rates: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(K,) ``p`` minimising ``||rates @ p - observed||^2`` subject to ``p >= 0, sum p = 1``.

    Args:
        rates: (R, K), R >= K, finite.
        observed: (R,).
    Non-negative least squares with the sum as a heavily weighted first row: the sum misses 1
    by ~1e-9 before the final normalisation (the tests check it against an exact solver).
    """
    k = rates.shape[1]
    big = 1e4 * max(1.0, float(np.abs(rates).max()))
    a = np.vstack([np.full((1, k), big), rates])
    b = np.concatenate([[big], observed])
    p = nnls(a, b, maxiter=50 * k)[0]
    return p / p.sum() if p.sum() > 0 else np.full(k, 1.0 / k)


def raw_shares(probs: np.ndarray, weights: np.ndarray | None = None,
               threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:  # fmt: skip
    """(K+1,) classify-and-count shares of ``probs`` (N, K): K groups, then uncertain."""
    p = check_probs(probs)
    return category_shares(p, check_weights(weights, len(p)), threshold)


def adjusted_count(
    probs: np.ndarray,
    cal_probs: np.ndarray,
    cal_targets: np.ndarray,
    weights: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """(K,) ACC shares of ``probs`` (N, K), with rates from held-out ``cal_probs`` (M, K) and
    their labels ``cal_targets`` (M,)."""
    p, c, t = _inputs(probs, cal_probs, cal_targets)
    q = category_shares(p, check_weights(weights, len(p)), threshold)
    return solve_simplex(_usable(hard_rates(c, t, threshold)), q)


def prob_adjusted_count(
    probs: np.ndarray,
    cal_probs: np.ndarray,
    cal_targets: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(K,) PACC shares of ``probs`` (N, K), with rates from held-out ``cal_probs`` (M, K)
    and their labels ``cal_targets`` (M,)."""
    p, c, t = _inputs(probs, cal_probs, cal_targets)
    w = check_weights(weights, len(p))
    return solve_simplex(_usable(soft_rates(c, t)), w @ p / w.sum())


def _inputs(
    probs: np.ndarray, cal_probs: np.ndarray, cal_targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = check_probs(probs)
    c = check_probs(cal_probs, "held-out probabilities")
    if c.shape[1] != p.shape[1]:
        raise QuantifyError(f"held-out probabilities have {c.shape[1]} classes, not {p.shape[1]}")
    return p, c, check_targets(cal_targets, len(c), c.shape[1])


def _usable(rates: np.ndarray) -> np.ndarray:
    missing = np.flatnonzero(np.isnan(rates).any(axis=0))
    if len(missing):
        raise QuantifyError(f"no held-out labels of class index {int(missing[0])}: cannot adjust")
    return rates
