"""Learning-curve maths for the benchmark: spread over seeds, labels to reach a target, AUC.

Pure numpy. A curve is one strategy's metric on the test split after each labeling step:
``labels`` (S,) label counts, ascending, and ``metric`` (seeds, S), one row per seed.
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

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.float64)
        metric = np.atleast_2d(np.asarray(self.metric, dtype=np.float64))
        if labels.ndim != 1 or metric.shape[1] != labels.size or labels.size == 0:
            raise CurveError(f"labels {labels.shape} and metric {metric.shape} do not align")
        if np.any(np.diff(labels) <= 0):
            raise CurveError("label counts must be strictly ascending")
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


def area_under_curve(labels: np.ndarray, metric_mean: np.ndarray) -> float:
    """Trapezoid area under the mean curve (S,) divided by the label range (so a curve flat at
    m scores m); the single value when there is one point."""
    labels = np.asarray(labels, dtype=np.float64)
    mean = np.asarray(metric_mean, dtype=np.float64)
    if labels.size == 1:
        return float(mean[0])
    return float(np.trapezoid(mean, labels) / (labels[-1] - labels[0]))


def summary_table(
    curves: Mapping[str, Curve],
    targets: Sequence[float] = (0.95, 1.0),
    baseline: str = BASELINE,
) -> list[dict[str, Any]]:
    """One row per strategy: final mean and std, AUC, and for each share f of the baseline's
    final mean metric: the target, labels to reach it (``labels_95`` for f = 0.95) and their
    ratio to the baseline's labels for the same target (``ratio_95``; < 1 = fewer labels).
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
        }
        for f in targets:
            key = target_key(f)
            target = f * base_final
            mine = labels_to_reach(c.labels, c.mean, target)
            ref = labels_to_reach(base.labels, base.mean, target)
            row[f"target_{key}"] = target
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
        metric_rows = [[seeds[s][x] for x in grid] for s in sorted(seeds, key=str)]
        curves[name] = Curve(np.array(grid), np.array(metric_rows))
    return curves
