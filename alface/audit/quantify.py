"""Group shares from a classifier's outputs: raw counts, adjusted counts, bootstrap intervals.

Each audited face ``i`` carries a weight ``w_i``: 1 to count faces, the seconds it stands for
to measure screen time. Every function takes ``weights``, so faces and screen time run through
the same code. The estimators (:mod:`alface.audit.counts`): ``raw`` (classify and count,
faces under ``threshold`` counted apart as *uncertain*), ``acc`` (adjusted classify and count,
Forman 2008) and ``pacc`` (probabilistic adjusted count, Bella et al. 2010), the last two
solved on the simplex with the rates measured on held-out labeled faces.

Intervals are 95 % percentile bootstraps that resample both the audited faces (whole clusters
when given, e.g. tracks: the faces of one person are not independent) and the held-out faces
(within each true class).

Diagnostics warn when the adjustment is unstable: a class with fewer than ``min_labels``
held-out labels (named), and a rates matrix whose condition number exceeds ``max_condition``
(the classes it cannot tell apart are named).

Which estimate leads a summary (:func:`choose_lead`):

1. ``ppi`` whenever a gold sample exists (:mod:`alface.audit.ppi`): unbiased whatever the
   model's errors, with intervals that hold. Measured (``benchmarks/audit_accuracy.py``,
   utkface-dev, O-Net linear probe at macro-F1 ~0.58, programmes of 294 faces, 200 gold): mean
   absolute error 0.8-1.1 points on every mix, 95 % intervals covering 0.93-0.98, 0.80-0.83 the
   width of the gold sample's own interval.
2. Otherwise the smaller :func:`estimated_mse` of ``pacc`` and ``raw``: the adjustment removes
   the model's bias but adds the noise of the held-out rates; the bootstrap measures both on
   the footage at hand. Measured, MAE in points (skewed 70/10/10/5/5 / balanced /
   minority-heavy 10/20/20/25/25), with 300 held-out labels: raw 7.6 / 3.9 / 5.0, pacc
   3.8 / 5.5 / 6.3, this rule 3.9 / 4.1 / 5.6; with 100: pacc 4.7 / 7.9 / 9.2, the rule
   5.4 / 3.9 / 5.0. The rule has the smallest worst case; neither fixed choice does: pacc helps
   skewed footage and hurts balanced footage, raw the reverse. ``acc`` is never better than
   ``pacc`` there (its hard counts waste the probabilities) and is kept for reference.
3. ``raw`` when some group has no held-out label (no adjustment exists). When raw leads its
   interval covers sampling noise only (it held the truth 0.45-0.66 of the time on balanced
   and minority-heavy footage), and the note says so: a gold sample is the remedy.

The diagnostics' warnings do not veto the adjustment (with 300 random held-out faces, a group
of 4 % always has fewer than 30 labels, yet pacc still halves raw's error on skewed footage):
the estimated errors already carry that noise; the warnings tell the reader why it is large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alface.audit import ppi
from alface.audit.counts import (  # noqa: F401  (the estimators are part of this module's API)
    DEFAULT_THRESHOLD,
    QuantifyError,
    adjusted_count,
    category_shares,
    check_probs,
    check_targets,
    check_weights,
    hard_rates,
    predicted_categories,
    prob_adjusted_count,
    raw_shares,
    soft_rates,
    solve_simplex,
)
from alface.audit.estimate import Estimate

UNCERTAIN = "uncertain"
MIN_LABELS = 30  # held-out labels per class below which a warning names the class
MAX_CONDITION = 10.0  # condition number of the rates above which the adjustment is unstable
_MAX_CELLS = 4_000_000  # bootstrap replicates x clusters drawn at once


# -- bootstrap ----------------------------------------------------------------------------------
def bootstrap_replicates(
    probs: np.ndarray,
    cal_probs: np.ndarray,
    cal_targets: np.ndarray,
    weights: np.ndarray,
    clusters: np.ndarray | None,
    threshold: float,
    n_boot: int,
    rng: np.random.Generator,
    adjust: bool = True,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates: ``raw`` (B, K+1), and with ``adjust`` ``acc`` and ``pacc`` (B, K).

    Each replicate resamples the audited faces (``probs`` (N, K), ``weights`` (N,)) by cluster
    (``clusters`` (N,) labels; None: each face its own) and the held-out faces within each
    true class.
    """
    k = probs.shape[1]
    onehot = np.eye(k + 1)[predicted_categories(probs, threshold)] * weights[:, None]
    stats = np.hstack([onehot, probs * weights[:, None], weights[:, None]])  # (N, 2K+2)
    if clusters is not None:
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        stats = np.stack([np.bincount(inv, col) for col in stats.T], axis=1)
    n_clusters = len(stats)
    chunk = max(1, _MAX_CELLS // max(n_clusters, 1))
    sums = np.vstack([
        rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=b) @ stats
        for b in np.diff(np.r_[0:n_boot:chunk, n_boot])
    ])  # fmt: skip
    denom = np.maximum(sums[:, -1:], np.finfo(float).tiny)
    hard_q, soft_q = sums[:, : k + 1] / denom, sums[:, k + 1 : 2 * k + 1] / denom
    out = {"raw": hard_q}
    if not adjust:
        return out
    hard_m, soft_m = np.empty((n_boot, k + 1, k)), np.empty((n_boot, k, k))
    cal_cats = np.eye(k + 1)[predicted_categories(cal_probs, threshold)]
    for j in range(k):
        rows = np.flatnonzero(cal_targets == j)
        draw = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=n_boot)
        hard_m[:, :, j] = draw @ cal_cats[rows] / len(rows)
        soft_m[:, :, j] = draw @ cal_probs[rows] / len(rows)
    out["acc"] = np.array([solve_simplex(m, q) for m, q in zip(hard_m, hard_q, strict=True)])
    out["pacc"] = np.array([solve_simplex(m, q) for m, q in zip(soft_m, soft_q, strict=True)])
    return out


def percentile_interval(reps: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per column of replicates ``reps`` (B, K): the alpha/2 and 1-alpha/2 quantiles."""
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


# -- diagnostics and the audit ------------------------------------------------------------------
@dataclass(frozen=True)
class Diagnostics:
    """How far the held-out faces support the adjustment: labels per class, the rates'
    condition numbers (``acc``, ``pacc``; NaN when a class has no label) and the warnings."""

    labels_per_class: dict[str, int]
    condition: dict[str, float]
    warnings: tuple[str, ...] = ()

    @property
    def stable(self) -> bool:
        """Whether nothing warns against the adjusted estimates."""
        return not self.warnings


def diagnose(
    cal_probs: np.ndarray,
    cal_targets: np.ndarray,
    classes: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
    min_labels: int = MIN_LABELS,
    max_condition: float = MAX_CONDITION,
) -> Diagnostics:
    """Diagnostics of held-out ``cal_probs`` (M, K) with labels ``cal_targets`` (M,)."""
    c = check_probs(cal_probs, "held-out probabilities")
    if c.shape[1] != len(classes):
        raise QuantifyError(f"held-out probabilities have {c.shape[1]} classes, not {len(classes)}")
    t = check_targets(cal_targets, len(c), len(classes))
    counts = np.bincount(t, minlength=len(classes))
    warn = []
    if missing := [name for name, n in zip(classes, counts, strict=True) if n == 0]:
        warn.append(f"no held-out labels of {', '.join(missing)}: no adjusted shares")
    if few := [
        f"{name} ({n})" for name, n in zip(classes, counts, strict=True) if 0 < n < min_labels
    ]:
        warn.append(f"few held-out labels of {', '.join(few)}, want >= {min_labels}: "
                    "the adjusted shares of these groups are noisy")  # fmt: skip
    cond = {"acc": float("nan"), "pacc": float("nan")}
    if not missing:
        for name, rates in (("acc", hard_rates(c, t, threshold)), ("pacc", soft_rates(c, t))):
            cond[name] = float(np.linalg.cond(rates))
            if not cond[name] <= max_condition:
                a, b = _confused(rates, classes)
                warn.append(f"{name}: near-singular rates (condition number {cond[name]:.3g} > "
                            f"{max_condition:g}): the model hardly tells {a} from {b}")  # fmt: skip
    return Diagnostics(dict(zip(classes, counts.tolist(), strict=True)), cond, tuple(warn))


def _confused(rates: np.ndarray, classes: Sequence[str]) -> tuple[str, str]:
    """The two classes weighing most in the rates' least singular direction."""
    v = np.linalg.svd(rates)[2][-1]
    a, b = np.argsort(-np.abs(v), kind="stable")[:2]
    return classes[a], classes[b]


@dataclass(frozen=True, eq=False)
class Audit:
    """Every estimate of the group shares of one set of faces, which leads, and why."""

    classes: tuple[str, ...]
    estimates: dict[str, Estimate]  # raw, acc, pacc, and with a gold sample ppi, classical
    diagnostics: Diagnostics
    lead: str  # the key of ``estimates`` a summary shows first
    n_faces: int
    total_weight: float  # faces, or seconds of screen time
    mse: dict[str, float]  # estimated_mse of raw and pacc ({} when no adjustment exists)
    notes: tuple[str, ...] = field(default=())  # the lead's reason and the warnings, one line each

    def to_dict(self) -> dict[str, Any]:
        """Plain data for summary.json."""
        d = self.diagnostics
        return {
            "classes": list(self.classes), "n_faces": self.n_faces,
            "total_weight": self.total_weight, "lead": self.lead, "notes": list(self.notes),
            "estimated_mse": self.mse,
            "estimates": {k: e.to_dict(self.classes) for k, e in self.estimates.items()},
            "diagnostics": {"labels_per_class": d.labels_per_class, "condition": d.condition,
                            "stable": d.stable, "warnings": list(d.warnings)},
        }  # fmt: skip


def audit_shares(
    probs: np.ndarray,
    classes: Sequence[str],
    cal_probs: np.ndarray,
    cal_targets: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    gold: tuple[np.ndarray, np.ndarray] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_boot: int = 1000,
    seed: int = 0,
    min_labels: int = MIN_LABELS,
    max_condition: float = MAX_CONDITION,
) -> Audit:
    """Raw, ACC and PACC shares with bootstrap 95 % intervals, PPI and gold-only shares when a
    gold sample is given, diagnostics, and the estimate to lead with.

    Args:
        probs: (N, K) the classifier's probabilities on the audited faces.
        classes: the K class names.
        cal_probs: (M, K) its probabilities on held-out labeled faces (not trained on).
        cal_targets: (M,) their labels, class indices.
        weights: (N,) what each face stands for (None: 1 each, i.e. count faces; seconds of
            screen time to measure screen time).
        clusters: (N,) labels of faces that are not independent (a track, a person): the
            bootstrap resamples whole clusters. None: each face its own.
        gold: (positions (n,) in ``probs``, labels (n,)) of a uniform random sample of the
            audited faces labeled by people (:func:`alface.audit.ppi.draw_gold_sample`).
        threshold: faces whose largest probability is below it are uncertain (raw, acc).
        n_boot: bootstrap replicates; seed: their random stream.
    """
    p = check_probs(probs)
    if p.shape[1] != len(classes) or not len(p):
        raise QuantifyError(f"need (N >= 1, {len(classes)}) probabilities, got {p.shape}")
    if n_boot < 10:
        raise QuantifyError(f"n_boot={n_boot}: use at least 10 bootstrap replicates")
    w = check_weights(weights, len(p))
    if clusters is not None and np.shape(clusters) != (len(p),):
        raise QuantifyError(f"clusters must be ({len(p)},) labels, got {np.shape(clusters)}")
    diag = diagnose(cal_probs, cal_targets, classes, threshold, min_labels, max_condition)
    c = check_probs(cal_probs)
    t = check_targets(cal_targets, len(c), len(classes))
    adjust = min(diag.labels_per_class.values()) > 0
    rng = np.random.default_rng(seed)
    reps = bootstrap_replicates(p, c, t, w, clusters, threshold, n_boot, rng, adjust)
    k, q = len(classes), category_shares(p, w, threshold)
    points = {"raw": q}
    if adjust:
        points["acc"] = solve_simplex(hard_rates(c, t, threshold), q)
        points["pacc"] = solve_simplex(soft_rates(c, t), w @ p / w.sum())
    estimates = {}
    for name, point in points.items():
        lo, hi = percentile_interval(reps[name])
        info: dict[str, Any] = {"se": reps[name][:, :k].std(axis=0).round(5).tolist()}
        if name == "raw":
            info |= {"threshold": threshold, "uncertain": float(q[k]),
                     "uncertain_low": float(lo[k]), "uncertain_high": float(hi[k])}  # fmt: skip
        else:
            info["n_labeled"] = len(t)
        estimates[name] = Estimate(name, point[:k], lo[:k], hi[:k], info)
    if gold is not None:
        estimates["ppi"] = ppi.ppi_shares(p, gold[0], gold[1], w)
        estimates["classical"] = ppi.classical_shares(p, gold[0], gold[1], w)
    mse = estimated_mse(points, reps, k) if adjust else {}
    lead, why = choose_lead(diag, gold is not None, mse)
    notes = (why, *diag.warnings)
    return Audit(tuple(classes), estimates, diag, lead, len(p), float(w.sum()), mse, notes)


def estimated_mse(
    points: dict[str, np.ndarray], reps: dict[str, np.ndarray], k: int
) -> dict[str, float]:
    """Estimated squared error, summed over the K shares, of ``raw`` and ``pacc``.

    PACC is taken as unbiased: its error is its bootstrap variance. Raw's is its variance plus
    its squared bias, estimated as the squared gap ``raw - pacc`` less the bootstrap variance
    of that gap (floored at 0).
    """
    raw, pacc = reps["raw"][:, :k], reps["pacc"]
    gap2 = float(((points["raw"][:k] - points["pacc"]) ** 2).sum())
    bias2 = max(0.0, gap2 - float((raw - pacc).var(axis=0).sum()))
    return {"raw": bias2 + float(raw.var(axis=0).sum()), "pacc": float(pacc.var(axis=0).sum())}


def choose_lead(diagnostics: Diagnostics, has_gold: bool, mse: dict[str, float]) -> tuple[str, str]:
    """(the estimate a summary leads with, the reason in one line): ppi with a gold sample,
    else the smaller :func:`estimated_mse` of pacc and raw (raw when no adjustment exists)."""
    if has_gold:
        return "ppi", ("ppi leads: the faces labeled at random make it unbiased whatever the "
                       "model's errors")  # fmt: skip
    k = len(diagnostics.labels_per_class)
    hint = ("its interval covers sampling noise only, not the model's bias: label a random "
            "sample of these faces for shares that hold")  # fmt: skip
    if not mse:
        return "raw", f"raw counts lead: no held-out labels for some group to adjust them; {hint}"
    rmse = {name: 100 * np.sqrt(v / k) for name, v in mse.items()}
    if mse["pacc"] < mse["raw"]:
        return "pacc", (f"pacc leads: estimated error {rmse['pacc']:.1f} points per group, raw "
                        f"{rmse['raw']:.1f} (mostly its bias)")  # fmt: skip
    return "raw", (
        f"raw counts lead: the adjustment would add more noise ({rmse['pacc']:.1f} "
        f"points per group) than the bias it removes (raw {rmse['raw']:.1f}); {hint}"
    )
