"""The loop's checks and draws, pure: the seed's stop rule, the target, the stop reasons, the
seeded generators of each draw, and the record an iteration leaves in the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Stop reasons of a round (and of the inner loop).
OVERFIT, STALLED, TARGET = "overfit set not kept", "itval stopped improving", "target met"
MAX_ITERATIONS, EXHAUSTED = "max iterations", "pool exhausted"
NO_NEW_PERSON = "no unlabeled person left for the itval set"
_PURPOSE = {"initial": 1, "overfit": 2, "itval": 3, "select": 4}


def decide(
    overfit_now: float | None,
    overfit_baseline: float | None,
    itval_now: float,
    itval_before: float,
    tolerance: float,
    threshold: float,
) -> tuple[bool, str | None]:
    """(continue?, stop reason): go on while the overfitting-set metric is not lower than the
    baseline by more than ``tolerance`` AND the itval metric gained more than ``threshold``."""
    kept = overfit_now is None or overfit_baseline is None
    if not kept and overfit_now < overfit_baseline - tolerance - 1e-12:
        return False, OVERFIT
    if not itval_now - itval_before > threshold:
        return False, STALLED
    return True, None


def target_met(metrics: Mapping[str, Mapping[str, Any]], cfg_loop: Any) -> bool:
    """Whether ``loop.target_metric`` on ``loop.target_set`` reaches ``loop.target_value``."""
    value = (metrics.get(cfg_loop.target_set) or {}).get(cfg_loop.target_metric)
    return value is not None and float(value) >= cfg_loop.target_value


def rng_for(seed: int, round_idx: int, iteration_idx: int, purpose: str) -> np.random.Generator:
    """The generator of one draw: the same (seed, round, iteration, purpose), the same draw."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, round_idx, iteration_idx, _PURPOSE[purpose]])
    )


def seed_for(seed: int, round_idx: int, iteration_idx: int, purpose: str) -> int:
    """An int seed for APIs that take one (selection), derived like :func:`rng_for`."""
    return int(rng_for(seed, round_idx, iteration_idx, purpose).integers(2**31 - 1))


def iteration_record(
    after: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    baseline: Mapping[str, Any] | None,
    ok: bool,
    reason: str | None,
    cfg_loop: Any,
    labels_used: int,
    unusable: int,
) -> dict[str, Any]:
    """What an iteration leaves in the store and its report: the new model's metrics per set
    (``after``), the previous model's on the itval set (``before``), the checks and the decision."""
    metrics = {s: after[s] for s in ("val", "overfit", "itval") if after.get(s)}
    if before:
        metrics["itval (previous model)"] = before
    m = cfg_loop.metric
    return {
        "labels_used": labels_used,
        "unusable": unusable,
        "metrics": metrics,
        "checks": {
            "metric": m,
            "overfit": (after.get("overfit") or {}).get(m),
            "overfit_baseline": baseline.get(m) if baseline else None,
            "overfit_tolerance": cfg_loop.overfit_tolerance,
            "itval": (after.get("itval") or {}).get(m),
            "itval_before": (before or {}).get(m),
            "improve_threshold": cfg_loop.improve_threshold,
        },
        "decision": "continue" if ok else "stop",
        "stop_reason": reason,
    }
