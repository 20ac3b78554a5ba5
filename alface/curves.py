"""Learning-curve maths for the benchmark: spread over seeds, labels to reach a target, AUC.

Pure numpy. A curve is one strategy's metric on the test split after each labeling step:
``labels`` (S,) label counts, ascending, and ``metric`` (seeds, S), one row per seed.

Two yardsticks: a share of the baseline's (random's) final mean metric, which moves with where
random happens to stop; and a share (98 %) of the **ceiling**, the metric of a model trained
on the whole selectable pool of the same seed, which does not: each seed's curve is divided by
its own ceiling before the mean is taken. AUC is given over the whole range and over a
low-budget range (default 50-500 labels, clipped to the curve).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alface.errors import AlfaceError

BASELINE = "random"


class CurveError(AlfaceError, ValueError):
    """Curves that cannot be compared (missing baseline, misaligned points)."""


@dataclass(frozen=True, eq=False)
class Curve:
    """One strategy's metric (seeds, S) at the label counts ``labels`` (S,)."""

    labels: np.ndarray
    metric: np.ndarray
    seeds: tuple[Any, ...] = ()  # the seed of each row, when known

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.float64)
        metric = np.atleast_2d(np.asarray(self.metric, dtype=np.float64))
        if labels.ndim != 1 or metric.shape[1] != labels.size or labels.size == 0:
            raise CurveError(f"labels {labels.shape} and metric {metric.shape} do not align")
        if np.any(np.diff(labels) <= 0):
            raise CurveError("label counts must be strictly ascending")
        if self.seeds and len(self.seeds) != metric.shape[0]:
            raise CurveError(f"{len(self.seeds)} seeds for {metric.shape[0]} rows")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "metric", metric)

    @property
    def n_seeds(self) -> int:
        return int(self.metric.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Mean over seeds (S,)."""
        return self.metric.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation over seeds (S,); 0 for one seed."""
        return self.metric.std(axis=0)

    @property
    def min(self) -> np.ndarray:
        return self.metric.min(axis=0)

    @property
    def max(self) -> np.ndarray:
        return self.metric.max(axis=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists: labels, per-seed metric, mean, std, min, max."""
        return {
            "labels": self.labels.tolist(),
            "metric": self.metric.tolist(),
            "seeds": list(self.seeds),
            **{k: getattr(self, k).tolist() for k in ("mean", "std", "min", "max")},
        }


def labels_to_reach(labels: np.ndarray, metric_mean: np.ndarray, target: float) -> float | None:
    """Label count (a float) at which the mean curve (S,) first reaches ``target``.

    Linear interpolation between the last point below the target and the first point at or
    above it; the first label count when the first point already reaches it; None if no
    point does. Later dips below the target are ignored (first crossing).
    """
    labels = np.asarray(labels, dtype=np.float64)
    mean = np.asarray(metric_mean, dtype=np.float64)
    hits = np.flatnonzero(mean >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(labels[0])
    x0, x1, y0, y1 = labels[i - 1], labels[i], mean[i - 1], mean[i]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def area_under_curve(
    labels: np.ndarray,
    metric_mean: np.ndarray,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """Trapezoid area under the mean curve (S,) over [lo, hi] (default: the whole curve;
    clipped to it; the curve is interpolated linearly at the ends) divided by the range, so a
    curve flat at m scores m; the value at the point when the range is a single point."""
    labels = np.asarray(labels, dtype=np.float64)
    mean = np.asarray(metric_mean, dtype=np.float64)
    a = labels[0] if lo is None else min(max(lo, labels[0]), labels[-1])
    b = labels[-1] if hi is None else min(max(hi, labels[0]), labels[-1])
    if b < a:
        raise CurveError(f"AUC range [{lo}, {hi}] is empty")
    if b == a:
        return float(np.interp(a, labels, mean))
    inside = (labels > a) & (labels < b)
    x = np.concatenate([[a], labels[inside], [b]])
    y = np.interp(x, labels, mean)
    return float(np.trapezoid(y, x) / (b - a))


def auc_range(labels: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The part of [lo, hi] that a curve measured at ``labels`` (S,) covers."""
    labels = np.asarray(labels, dtype=np.float64)
    return float(min(max(lo, labels[0]), labels[-1])), float(min(max(hi, labels[0]), labels[-1]))


def ceiling_share(curve: Curve, ceiling: Mapping[Any, float]) -> np.ndarray:
    """Mean over seeds (S,) of each seed's curve divided by that seed's ``ceiling``."""
    if not curve.seeds:
        raise CurveError("a curve without seeds cannot be matched with per-seed ceilings")
    missing = [s for s in curve.seeds if s not in ceiling]
    if missing:
        raise CurveError(f"no ceiling for seed(s) {missing}")
    tops = np.array([float(ceiling[s]) for s in curve.seeds])
    if np.any(tops <= 0):
        raise CurveError(f"ceilings must be positive, got {tops.tolist()}")
    return (curve.metric / tops[:, None]).mean(axis=0)


def summary_table(
    curves: Mapping[str, Curve],
    targets: Sequence[float] = (0.95, 1.0),
    baseline: str = BASELINE,
    ceiling: Mapping[Any, float] | None = None,
    ceiling_target: float = 0.98,
    low_range: tuple[float, float] = (50.0, 500.0),
) -> list[dict[str, Any]]:
    """One row per strategy: final mean and std, AUC (whole range) and ``auc_low`` (over
    ``low_range``), and for each share f of the baseline's final mean metric: the target,
    labels to reach it (``labels_95`` for f = 0.95) and their ratio to the baseline's labels
    for the same target (``ratio_95``; < 1 = fewer labels).

    With per-seed ``ceiling`` values (seed -> metric of a model trained on the whole pool):
    ``ceiling`` (their mean), and labels to reach ``ceiling_target`` of the ceiling on the mean
    of the per-seed shares (``labels_c98``, ``ratio_c98``).
    """
    if baseline not in curves:
        raise CurveError(f"no {baseline!r} curve to compare with; strategies: {', '.join(curves)}")
    base = curves[baseline]
    for name, c in curves.items():
        if c.labels.shape != base.labels.shape or not np.allclose(c.labels, base.labels):
            raise CurveError(f"{name!r} was measured at other label counts than {baseline!r}")
    base_final = float(base.mean[-1])
    rows = []
    for name, c in curves.items():
        row: dict[str, Any] = {
            "strategy": name,
            "seeds": c.n_seeds,
            "final": float(c.mean[-1]),
            "final_std": float(c.std[-1]),
            "auc": area_under_curve(c.labels, c.mean),
            "auc_low": area_under_curve(c.labels, c.mean, *low_range),
            "auc_low_range": list(auc_range(c.labels, *low_range)),
        }
        for f in targets:
            key = target_key(f)
            target = f * base_final
            mine = labels_to_reach(c.labels, c.mean, target)
            ref = labels_to_reach(base.labels, base.mean, target)
            row[f"target_{key}"] = target
            row[f"labels_{key}"] = mine
            row[f"ratio_{key}"] = mine / ref if mine is not None and ref else None
        if ceiling is not None:
            key = f"c{target_key(ceiling_target)}"
            mine = labels_to_reach(c.labels, ceiling_share(c, ceiling), ceiling_target)
            ref = labels_to_reach(base.labels, ceiling_share(base, ceiling), ceiling_target)
            row["ceiling"] = float(np.mean([ceiling[s] for s in c.seeds]))
            row[f"labels_{key}"] = mine
            row[f"ratio_{key}"] = mine / ref if mine is not None and ref else None
        rows.append(row)
    return rows


def target_key(share: float) -> str:
    """'95' for 0.95, '100' for 1.0, '97.5' for 0.975: the suffix of summary keys."""
    return f"{share * 100:g}"


def collect_curves(records: Iterable[Mapping[str, Any]], metric: str) -> dict[str, Curve]:
    """Curves by strategy from benchmark points ``{"strategy", "seed", "labels", "metrics":
    {metric: value, ...}}``; every seed of a strategy must have the same label counts."""
    points: dict[str, dict[Any, dict[float, float]]] = {}
    for r in records:
        if metric not in r["metrics"]:
            raise CurveError(f"no metric {metric!r} in a point; it has {', '.join(r['metrics'])}")
        seeds = points.setdefault(str(r["strategy"]), {})
        seeds.setdefault(r["seed"], {})[float(r["labels"])] = float(r["metrics"][metric])
    curves = {}
    for name, seeds in points.items():
        grids = {tuple(sorted(p)) for p in seeds.values()}
        if len(grids) != 1:
            raise CurveError(f"the seeds of {name!r} stop at different label counts")
        grid = sorted(grids.pop())
        order = sorted(seeds, key=str)
        metric_rows = [[seeds[s][x] for x in grid] for s in order]
        curves[name] = Curve(np.array(grid), np.array(metric_rows), tuple(order))
    return curves
