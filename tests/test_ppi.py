"""Prediction-powered shares: a hand-checked case, exact unbiasedness over every possible gold
sample, coverage on simulated footage (where an interval without the rectifier fails), PPI++
against plain PPI, and the gold sample draw."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alface.audit.ppi import PPIError, classical_shares, draw_gold_sample, ppi_shares

Z = 1.959963984540054
F = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
GOLD, LABELS = np.array([0, 2]), np.array([0, 0])


def test_ppi_hand_checked():
    e = ppi_shares(F, GOLD, LABELS, tune=False)
    # mean of f over all 4 faces (0.45) + mean rectifier of faces 0 and 2: (0.2 + 0.7) / 2
    assert e.shares == pytest.approx([0.9, 0.1])
    # rectifiers 0.2, 0.7: s^2 = 0.125; finite-population factor 1 - 2/4; n = 2
    se = np.sqrt(0.5 * 0.125 / 2)
    assert e.low == pytest.approx([0.9 - Z * se, 0.0])
    assert e.high == pytest.approx([1.0, 0.1 + Z * se])
    # the paper's interval adds var(f) / N = 0.29 / 3 / 4 and drops the factor
    wide = ppi_shares(F, GOLD, LABELS, tune=False, finite=False)
    assert wide.info["se"][0] == pytest.approx(np.sqrt(0.125 / 2 + 0.29 / 3 / 4))
    gold_only = classical_shares(F, GOLD, LABELS)
    assert gold_only.shares.tolist() == [1.0, 0.0] and gold_only.width.tolist() == [0.0, 0.0]


def _population(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array([0, 0, 1, 2, 1, 0, 2, 1])
    f = 0.6 * np.eye(3)[y] + 0.4 * rng.dirichlet([1, 1, 1], size=8)
    return f, y, rng.uniform(0.5, 2.0, size=8)


@pytest.mark.parametrize("weighted", [False, True])
def test_ppi_is_unbiased_and_its_variance_exact_over_every_gold_sample(weighted):
    f, y, w = _population(0)
    w = w if weighted else None
    ww = np.ones(8) if w is None else w
    truth = np.bincount(y, ww, minlength=3) / ww.sum()
    runs = [ppi_shares(f, np.array(g), y[list(g)], w, tune=False)
            for g in itertools.combinations(range(8), 3)]  # fmt: skip
    est = np.array([e.shares for e in runs])
    assert ((est > 0) & (est < 1)).all()  # nothing clipped: the identities below are exact
    assert est.mean(0) == pytest.approx(truth, abs=1e-12)
    se2 = np.array([e.info["se"] for e in runs]) ** 2
    assert se2.mean(0) == pytest.approx(est.var(0), rel=1e-9)


def test_gold_only_mean_is_unbiased_over_every_gold_sample():
    f, y, _ = _population(1)
    runs = [classical_shares(f, np.array(g), y[list(g)])
            for g in itertools.combinations(range(8), 4)]  # fmt: skip
    est = np.array([e.shares for e in runs])
    assert est.mean(0) == pytest.approx(np.bincount(y, minlength=3) / 8, abs=1e-12)


def _footage(seed: int, useless: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """2,000 faces, shares 60/30/10; the classifier calls half of class 2 class 1 (raw counts
    miss 5 points of it), or ignores the faces altogether (``useless``)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=2000, p=[0.6, 0.3, 0.1])
    said = np.where((y == 2) & (rng.random(2000) < 0.5), 1, y)
    said = np.where(rng.random(2000) < 0.15, rng.integers(0, 3, 2000), said)
    if useless:
        said = rng.integers(0, 3, 2000)
    return 0.7 * np.eye(3)[said] + 0.3 * rng.dirichlet([1, 1, 1], size=2000), y


def test_intervals_cover_the_footage_shares_and_beat_the_gold_sample_alone():
    f, y = _footage(0)
    truth = np.bincount(y, minlength=3) / len(y)
    rng = np.random.default_rng(1)
    covered, naive, widths = [], [], []
    for _ in range(300):
        g = rng.choice(len(y), size=200, replace=False)
        e, c = ppi_shares(f, g, y[g]), classical_shares(f, g, y[g])
        covered.append(e.covers(truth))
        widths.append(e.width / c.width)
        mean, se = f.mean(0), f.std(0, ddof=1) / np.sqrt(len(f))  # no rectifier: broken
        naive.append(np.abs(mean - truth) <= Z * se)
    cover = np.mean(covered, axis=0)
    assert cover.min() >= 0.88 and cover.mean() >= 0.91  # 0.95 expected; sd ~0.013 each
    assert np.mean(naive, axis=0).min() < 0.5  # so this test fails an interval sans rectifier
    assert np.mean(widths) < 0.9


def test_power_tuning_falls_back_to_the_gold_sample_for_a_useless_model():
    f, y = _footage(2, useless=True)
    rng = np.random.default_rng(3)
    tuned, plain = [], []
    for _ in range(50):
        g = rng.choice(len(y), size=200, replace=False)
        c = classical_shares(f, g, y[g]).width.mean()
        tuned.append(ppi_shares(f, g, y[g]).width.mean() / c)
        plain.append(ppi_shares(f, g, y[g], tune=False).width.mean() / c)
    assert np.mean(tuned) < 1.03 and np.mean(plain) > 1.1


def test_draw_gold_sample_is_reproducible():
    a = draw_gold_sample(1000, 50, seed=7)
    assert a.tolist() == draw_gold_sample(1000, 50, seed=7).tolist()
    assert len(set(a.tolist())) == 50 and a.min() >= 0 and a.max() < 1000
    assert (np.diff(a) > 0).all() and a.tolist() != draw_gold_sample(1000, 50, seed=8).tolist()
    with pytest.raises(PPIError, match="gold sample size 11"):
        draw_gold_sample(10, 11, seed=0)


@pytest.mark.parametrize(
    ("gold", "labels", "message"),
    [
        ([0, 0], [0, 1], "distinct"),
        ([0, 9], [0, 1], "outside the 4"),
        ([0, 1], [0, 2], "class indices 0..1"),
        ([0, 1], [0], "2 gold positions but 1"),
    ],
)
def test_bad_gold_samples_are_refused(gold, labels, message):
    with pytest.raises(PPIError, match=message):
        ppi_shares(F, np.array(gold), np.array(labels))
