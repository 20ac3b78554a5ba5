"""Stop rules of the inner loop (``loop.stop_rule``): when another label batch is not worth it.

``seed`` (the default): the seed's rule, :func:`alface.loop.decide`: go on while the
overfitting-set metric is kept AND the metric on a newly labeled iteration-validation (itval)
set improves. It costs labels: an itval set (``data.itval_size``) every iteration, and an
overfitting set taken out of training for the round.

The others need no labels, so with them the loop draws no itval and no overfitting set; they
read the models' predictions on a fixed **stop set** (as Bloodgood & Vijay-Shanker do): the
round's pool as its first iteration found it (the faces its baseline model scored). Each
iteration the new model scores the stop set (the next iteration's pool scoring reuses that),
and its predictions are compared with the previous model's on the same faces:

- ``stabilizing`` (stabilizing predictions, Bloodgood & Vijay-Shanker 2009): stop when the mean
  Cohen's kappa between successive models' predictions over the last ``loop.stop_window``
  iterations reaches ``loop.stop_kappa`` (0.99 in the paper; 0.9 by default here, chosen on
  scikit-learn's digits by ``benchmarks/stop_calibration.py``: with linear heads refitted every
  iteration, successive models on faces agree at kappa ~0.83-0.95, so 0.99 never stops);
- ``kappa_average`` (small-text's ``KappaAverage``, after the same paper): stop when the kappa
  values themselves settle: the mean absolute change of kappa over the window is below
  ``1 - loop.stop_kappa``;
- ``uncertainty`` (overall uncertainty, Zhu, Wang & Hovy 2008): stop when the mean normalised
  entropy of the new model's predictions on the still unlabeled part of the stop set (the
  remaining pool) falls below ``loop.stop_uncertainty``.

A stop set that shrank with the pool (an earlier version) agreed perfectly once a handful of
faces was left: a small pool then ran to exhaustion. Pure numpy; :func:`decide_label_free` is
the rule, given the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alface.errors import AlfaceError

STOP_RULES = ("seed", "stabilizing", "kappa_average", "uncertainty")
STABLE, KAPPA_SETTLED, CERTAIN = (
    "predictions stabilized",
    "kappa settled",
    "pool predictions certain",
)


class StopRuleError(AlfaceError, ValueError):
    """An unknown stop rule or predictions that cannot be compared."""


def check_stop_rule(name: str) -> str:
    """``name`` if it is a stop rule, else StopRuleError listing them."""
    if name not in STOP_RULES:
        raise StopRuleError(f"loop.stop_rule={name!r}: use one of {', '.join(STOP_RULES)}")
    return name


def uses_labels(rule: str) -> bool:
    """Whether ``rule`` needs labeled itval and overfitting sets (only the seed's does)."""
    return check_stop_rule(rule) == "seed"


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa of two predictions (N,) of class indices in 0..K-1: 1 when they agree
    everywhere (also when chance agreement is 1), 0 at chance agreement."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise StopRuleError(f"predictions of shapes {a.shape} and {b.shape} cannot be compared")
    if not len(a):
        raise StopRuleError("no predictions to compare (empty stop set)")
    observed = float(np.mean(a == b))
    pa = np.bincount(a, minlength=num_classes) / len(a)
    pb = np.bincount(b, minlength=num_classes) / len(b)
    chance = float(pa @ pb)
    if chance >= 1.0 - 1e-12:
        return 1.0 if observed >= 1.0 - 1e-12 else 0.0
    return (observed - chance) / (1.0 - chance)


def mean_normalised_entropy(probs: np.ndarray) -> float:
    """Mean over rows of the entropy of ``probs`` (N, K) divided by log K (0: certain, 1: flat)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not len(p):
        raise StopRuleError(f"probabilities must be (N, K>=2) with N >= 1, got {p.shape}")
    h = -np.sum(np.where(p > 0, p * np.log(np.clip(p, 1e-300, None)), 0.0), axis=1)
    return float(np.mean(h) / np.log(p.shape[1]))


def stabilized(kappas: Sequence[float], window: int, threshold: float) -> bool:
    """Stabilizing predictions: the mean of the last ``window`` kappas >= ``threshold``."""
    k = np.asarray(kappas, np.float64)
    return len(k) >= window >= 1 and float(k[-window:].mean()) >= threshold


def kappa_settled(kappas: Sequence[float], window: int, threshold: float) -> bool:
    """Kappa-average: mean |change| of the last ``window`` kappas < 1 - ``threshold``."""
    k = np.asarray(kappas, np.float64)
    if window < 2 or len(k) < window:
        return False
    return float(np.abs(np.diff(k[-window:])).mean()) < 1.0 - threshold


def decide_label_free(
    rule: str, kappas: Sequence[float], uncertainty: float, cfg_loop: Any
) -> tuple[bool, str | None]:
    """(continue?, stop reason) of a label-free ``rule`` given this round's kappas so far
    (the newest last) and the new model's mean normalised entropy on the stop set."""
    lc = cfg_loop
    if check_stop_rule(rule) == "stabilizing" and stabilized(kappas, lc.stop_window, lc.stop_kappa):
        return False, STABLE
    if rule == "kappa_average" and kappa_settled(kappas, lc.stop_window, lc.stop_kappa):
        return False, KAPPA_SETTLED
    if rule == "uncertainty" and uncertainty < lc.stop_uncertainty:  # NaN: nothing unlabeled
        return False, CERTAIN
    if rule == "seed":
        raise StopRuleError("the seed's stop rule needs labels: use alface.loop.decide")
    return True, None


def stop_set_checks(
    before: np.ndarray, after: np.ndarray, num_classes: int, unlabeled: np.ndarray | None = None
) -> dict[str, float]:
    """Kappa between the previous and the new model's predictions on the stop set (``before``,
    ``after``: probabilities (N, K)), and the new model's mean normalised entropy on the rows
    ``unlabeled`` (a bool mask (N,): the stop set's faces still unlabeled; default all)."""
    before, after = np.asarray(before), np.asarray(after)
    rows = after if unlabeled is None else after[np.asarray(unlabeled, bool)]
    return {
        "kappa": cohen_kappa(before.argmax(axis=1), after.argmax(axis=1), num_classes),
        "uncertainty": mean_normalised_entropy(rows) if len(rows) else float("nan"),
        "stop_set": int(len(after)),
        "unlabeled": int(len(rows)),
    }
