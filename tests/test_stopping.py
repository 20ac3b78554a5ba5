import math

import numpy as np
import pytest

from alface.config import Config
from alface.stopping import (
    CERTAIN,
    KAPPA_SETTLED,
    STABLE,
    StopRuleError,
    check_stop_rule,
    cohen_kappa,
    decide_label_free,
    kappa_settled,
    mean_normalised_entropy,
    stabilized,
    stop_set_checks,
    uses_labels,
)


def test_cohen_kappa_by_hand():
    a = np.array([0, 0, 1, 1])
    assert cohen_kappa(a, a, 2) == 1.0
    assert cohen_kappa(a, 1 - a, 2) == -1.0
    # observed 3/4; chance: p_a = (.5,.5), p_b = (.25,.75) -> .5; kappa = (.75-.5)/(1-.5)
    assert cohen_kappa(a, np.array([0, 1, 1, 1]), 2) == pytest.approx(0.5)
    assert cohen_kappa(np.zeros(3, int), np.zeros(3, int), 3) == 1.0  # chance agreement 1
    with pytest.raises(StopRuleError, match="empty"):
        cohen_kappa(a[:0], a[:0], 2)
    with pytest.raises(StopRuleError, match="shapes"):
        cohen_kappa(a, a[:3], 2)


def test_mean_normalised_entropy_by_hand():
    assert mean_normalised_entropy(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(0.5)
    p = np.array([[0.7, 0.2, 0.1]])
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)) / math.log(3)
    assert mean_normalised_entropy(p) == pytest.approx(h)
    with pytest.raises(StopRuleError):
        mean_normalised_entropy(np.ones((2, 1)))


def test_window_rules():
    assert not stabilized([0.995, 0.999], 3, 0.99)  # too few iterations
    assert stabilized([0.5, 0.99, 0.995, 0.999], 3, 0.99)
    assert not stabilized([0.99, 0.98, 0.99], 3, 0.99)  # mean 0.9867
    # kappa-average: the kappas settle (mean |change| < 0.01), however low they are
    assert kappa_settled([0.80, 0.805, 0.80], 3, 0.99)
    assert not kappa_settled([0.70, 0.80, 0.90], 3, 0.99)
    assert not kappa_settled([0.80, 0.80], 3, 0.99)


def test_decide_label_free_per_rule():
    lc = Config().replace("loop.stop_window=2", "loop.stop_kappa=0.9").loop
    assert decide_label_free("stabilizing", [0.95, 0.92], 0.5, lc) == (False, STABLE)
    assert decide_label_free("stabilizing", [0.5, 0.92], 0.5, lc) == (True, None)
    assert decide_label_free("kappa_average", [0.5, 0.55], 0.5, lc) == (False, KAPPA_SETTLED)
    assert decide_label_free("kappa_average", [0.5, 0.7], 0.5, lc) == (True, None)
    assert decide_label_free("uncertainty", [], 0.04, lc) == (False, CERTAIN)
    assert decide_label_free("uncertainty", [], 0.06, lc) == (True, None)
    with pytest.raises(StopRuleError, match="needs labels"):
        decide_label_free("seed", [], 0.0, lc)
    with pytest.raises(StopRuleError, match="use one of seed, stabilizing"):
        check_stop_rule("never")
    assert uses_labels("seed") and not uses_labels("uncertainty")


def test_stop_set_checks_compare_argmax_predictions():
    before = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    after = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    c = stop_set_checks(before, after, 2)
    assert c["stop_set"] == 3
    assert c["kappa"] == pytest.approx(cohen_kappa(np.array([0, 1, 0]), np.array([0, 1, 1]), 2))
    assert c["uncertainty"] == pytest.approx(mean_normalised_entropy(after))
    c = stop_set_checks(before, after, 2, np.array([False, True, False]))
    assert c["uncertainty"] == pytest.approx(mean_normalised_entropy(after[1:2]))
    assert c["unlabeled"] == 1 and c["stop_set"] == 3
    assert math.isnan(stop_set_checks(before, after, 2, np.zeros(3, bool))["uncertainty"])
