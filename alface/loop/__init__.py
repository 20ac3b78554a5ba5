"""The seed's inner and outer active-learning loops: a resumable state machine over the store
(:mod:`alface.loop.machine`) and its pure checks and draws (:mod:`alface.loop.checks`)."""

from alface.loop.checks import (
    EXHAUSTED,
    MAX_ITERATIONS,
    NO_NEW_PERSON,
    OVERFIT,
    STALLED,
    TARGET,
    decide,
    iteration_record,
    rng_for,
    seed_for,
    target_met,
)
from alface.loop.machine import META_KEY, STEPS, Loop, LoopError, LoopResult
from alface.loop.report import REPORTS_DIR

__all__ = [
    "EXHAUSTED", "MAX_ITERATIONS", "META_KEY", "NO_NEW_PERSON", "OVERFIT", "REPORTS_DIR",
    "STALLED", "STEPS", "TARGET", "Loop", "LoopError", "LoopResult", "decide",
    "iteration_record", "rng_for", "seed_for", "target_met",
]  # fmt: skip
