"""Prediction-powered inference (Angelopoulos et al., Science 2023) for group shares.

The setting: the classifier's probabilities ``f_i`` (K,) on every audited face ``i = 1..N``,
and a *gold sample* G: ``n`` of those faces drawn uniformly at random without replacement
(:func:`draw_gold_sample`) and labeled by people, ``Y_i`` one-hot (K,). The estimand is the
share of each group among the audited faces, each face weighted by ``w_i`` (1 for face counts,
the seconds it stands for for screen time): ``theta = sum_i w_i Y_i / W`` with ``W = sum w``.

With ``u_i = (N w_i / W) Y_i`` and ``v_i = (N w_i / W) f_i`` (so ``theta = mean_all(u)``):

- PPI (mean + rectifier): ``mean_all(v) + mean_G(u - v)``. The rectifier ``mean_G(u - v)`` is
  an unbiased estimate of ``mean_all(u - v)`` under random sampling, so the estimate is unbiased
  *whatever the classifier's errors*; it is tight when ``u - v`` varies little, i.e. when the
  classifier is good.
- PPI++ (power tuning): ``lambda mean_all(v) + mean_G(u - lambda v)`` with ``lambda`` per class
  chosen on the gold sample to minimise the variance (clipped to [0, 1]): never much worse than
  the gold sample alone (``lambda = 0``), as good as PPI when the classifier is good.
- classical (gold only): ``sum_G w Y / sum_G w`` (ratio estimator, linearised variance).

Intervals are CLT intervals, ``estimate +- z * se``, clipped to [0, 1] (as are the estimates).
``finite=True`` (the default) takes the audited faces as the population: the only randomness
is the draw of the gold sample, which the tool makes itself, so the interval is valid whatever
the classifier and however correlated the faces are (one person in many frames); the
variance carries the finite-population factor ``1 - n/N`` and the mean over all faces is
exact. ``finite=False`` is the paper's interval, for audited faces that are themselves a
sample of a larger population: it adds the variance of ``mean_all(v)`` and drops the factor.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from alface.audit.estimate import Estimate
from alface.errors import AlfaceError


class PPIError(AlfaceError, ValueError):
    """A gold sample or prediction set that PPI cannot use."""


def draw_gold_sample(n_faces: int, n: int, seed: int) -> np.ndarray:
    """Positions (n,) int64, sorted, of ``n`` faces drawn uniformly without replacement from
    ``n_faces`` audited faces; the same seed gives the same faces."""
    if not 1 <= n <= n_faces:
        raise PPIError(f"gold sample size {n} must be between 1 and the {n_faces} audited faces")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_faces, size=n, replace=False)).astype(np.int64)


def _check(
    probs: np.ndarray, gold_idx: np.ndarray, gold_labels: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated (probs (N, K) float64, positions (n,), one-hot labels (n, K), weights (N,))."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not np.isfinite(p).all():
        raise PPIError(f"probabilities must be finite (N, K) with K >= 2, got {p.shape}")
    n_faces, k = p.shape
    idx = np.asarray(gold_idx, dtype=np.int64).reshape(-1)
    y = np.asarray(gold_labels).reshape(-1)
    if len(idx) != len(y):
        raise PPIError(f"{len(idx)} gold positions but {len(y)} gold labels")
    if len(idx) < 2 or len(np.unique(idx)) != len(idx):
        raise PPIError(f"the gold sample needs >= 2 distinct faces, got {len(idx)} positions")
    if idx.min() < 0 or idx.max() >= n_faces:
        raise PPIError(f"gold position {int(idx.max())} outside the {n_faces} audited faces")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k:
        raise PPIError(f"gold labels must be class indices 0..{k - 1}, got {y.min()}..{y.max()}")
    w = np.ones(n_faces) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_faces,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise PPIError(f"weights must be (N,) = ({n_faces},) finite, >= 0, not all 0")
    return p, idx, np.eye(k)[y], w


def _interval(est: np.ndarray, var: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """(estimate, low, high) clipped to [0, 1], with se = sqrt(var)."""
    z = NormalDist().inv_cdf(1 - alpha / 2)
    se = np.sqrt(np.maximum(var, 0.0))
    return np.clip(est, 0, 1), np.clip(est - z * se, 0, 1), np.clip(est + z * se, 0, 1)


def ppi_shares(
    probs: np.ndarray,
    gold_idx: np.ndarray,
    gold_labels: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float = 0.05,
    tune: bool = True,
    finite: bool = True,
) -> Estimate:
    """Shares (K,) of the groups among the audited faces, by PPI (``tune=False``) or PPI++.

    Args:
        probs: (N, K) the classifier's probabilities on every audited face.
        gold_idx: (n,) positions in ``probs`` of the gold sample (a uniform random draw).
        gold_labels: (n,) people's labels of those faces, class indices.
        weights: (N,) what each face stands for (None: 1 each; seconds for screen time).
        alpha: 1 - confidence of the intervals.
        tune: PPI++ power tuning (a lambda per class) rather than plain PPI (lambda = 1).
        finite: the audited faces are the population (see the module docstring).
    """
    p, idx, y, w = _check(probs, gold_idx, gold_labels, weights)
    n_faces, n = len(p), len(idx)
    scale = n_faces * w / w.sum()  # (N,)
    v_all = scale[:, None] * p  # (N, K)
    u, v = scale[idx, None] * y, v_all[idx]  # (n, K)
    fpc = 1 - n / n_faces if finite else 1.0
    extra = 0.0 if finite else n / n_faces  # the variance of mean_all(v), relative to mean_G's
    lam = np.ones(p.shape[1])
    if tune:
        cov = ((u - u.mean(0)) * (v - v.mean(0))).sum(0) / (n - 1)
        var_v = v.var(0, ddof=1)
        lam = np.clip(np.divide(cov, var_v * (1 + extra), out=np.zeros_like(cov),
                                where=var_v > 0), 0, 1)  # fmt: skip
    est = lam * v_all.mean(0) + (u - lam * v).mean(0)
    var = fpc * (u - lam * v).var(0, ddof=1) / n
    if not finite:
        var = var + lam**2 * v_all.var(0, ddof=1) / n_faces
    shares, low, high = _interval(est, var, alpha)
    info: dict[str, Any] = {"n_gold": n, "n_faces": n_faces, "finite": finite,
                            "se": np.sqrt(var).tolist()}  # fmt: skip
    if tune:
        info["lambda"] = lam.round(4).tolist()
    return Estimate("ppi", shares, low, high, info)


def classical_shares(
    probs: np.ndarray,
    gold_idx: np.ndarray,
    gold_labels: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float = 0.05,
    finite: bool = True,
) -> Estimate:
    """Shares (K,) from the gold sample alone (``sum_G w Y / sum_G w``), the baseline PPI is
    measured against; ``probs`` (N, K) only gives N and K. Arguments as :func:`ppi_shares`."""
    p, idx, y, w = _check(probs, gold_idx, gold_labels, weights)
    n_faces, n = len(p), len(idx)
    wg = w[idx]
    if wg.sum() <= 0:
        raise PPIError("every gold face has weight 0: the gold sample says nothing")
    est = (wg[:, None] * y).sum(0) / wg.sum()
    resid = (wg / wg.mean())[:, None] * (y - est)  # (n, K) linearised ratio estimator
    fpc = 1 - n / n_faces if finite else 1.0
    var = fpc * resid.var(0, ddof=1) / n
    shares, low, high = _interval(est, var, alpha)
    return Estimate(
        "classical",
        shares,
        low,
        high,
        {"n_gold": n, "n_faces": n_faces, "finite": finite, "se": np.sqrt(var).tolist()},
    )
