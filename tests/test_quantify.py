"""Share estimators: hand-checked counts and rates, the simplex solver against an exact one,
ACC/PACC recovering known shares, weights as repeated faces, cluster bootstrap, diagnostics,
and which estimate leads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alface.audit.quantify import (
    QuantifyError,
    adjusted_count,
    audit_shares,
    bootstrap_replicates,
    category_shares,
    diagnose,
    hard_rates,
    predicted_categories,
    prob_adjusted_count,
    raw_shares,
    soft_rates,
    solve_simplex,
)

CLASSES = ("a", "b")


def test_predicted_categories_put_unsure_faces_apart():
    probs = np.array([[0.6, 0.4], [0.45, 0.55], [0.5, 0.5]])
    assert predicted_categories(probs, 0.5).tolist() == [0, 1, 0]
    assert predicted_categories(probs, 0.56).tolist() == [0, 2, 2]  # 2 = uncertain


def test_category_shares_weight_each_face():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45]])
    assert category_shares(probs, np.ones(3), 0.6).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    # seconds of screen time: 3 s, 1 s, 4 s
    assert category_shares(probs, np.array([3.0, 1.0, 4.0]), 0.6).tolist() == pytest.approx(
        [3 / 8, 1 / 8, 4 / 8]
    )


def test_rates_hand_checked():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    targets = np.array([0, 0, 1, 1])
    # class a: one predicted a, one b; class b: one uncertain (0.55 < 0.6), one b
    assert hard_rates(probs, targets, 0.6).tolist() == [[0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]
    assert soft_rates(probs, targets) == pytest.approx(np.array([[0.6, 0.325], [0.4, 0.675]]))
    assert np.isnan(hard_rates(probs[:2], targets[:2], 0.6)[:, 1]).all()  # no b labels


def _exact_simplex(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares on the simplex by trying every support (KKT system per support)."""
    k, best, best_p = a.shape[1], np.inf, None
    for r in range(1, k + 1):
        for support in itertools.combinations(range(k), r):
            s = list(support)
            kkt = np.block([[2 * a[:, s].T @ a[:, s], np.ones((r, 1))], [np.ones((1, r)), 0]])
            sol = np.linalg.lstsq(kkt, np.r_[2 * a[:, s].T @ b, 1], rcond=None)[0][:r]
            if (sol >= -1e-12).all():
                p = np.zeros(k)
                p[s] = sol
                if (obj := np.sum((a @ p - b) ** 2)) < best - 1e-15:
                    best, best_p = obj, p
    return best_p


def test_solve_simplex_clips_where_the_inverse_leaves_the_simplex():
    m = np.array([[0.8, 0.3], [0.2, 0.7]])
    assert solve_simplex(m, m @ [0.25, 0.75]) == pytest.approx([0.25, 0.75], abs=1e-9)
    assert np.linalg.solve(m, [0.9, 0.1]) == pytest.approx([1.2, -0.2])  # the raw inverse
    assert solve_simplex(m, np.array([0.9, 0.1])) == pytest.approx([1.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_solve_simplex_matches_an_exact_solver(seed):
    rng = np.random.default_rng(seed)
    k = 3 + seed % 3
    a = rng.dirichlet(np.ones(k + 1), size=k).T  # (K+1, K) columns on the simplex, like rates
    b = rng.dirichlet(np.ones(k + 1))
    p = solve_simplex(a, b)
    assert p.min() >= 0 and p.sum() == pytest.approx(1, abs=1e-12)
    assert p == pytest.approx(_exact_simplex(a, b), abs=1e-7)


def _confused_faces(n0: int, n1: int) -> np.ndarray:
    """Faces whose classifier says a for 80 % of class a and 30 % of class b (sure of it)."""
    sure_a, sure_b = [0.9, 0.1], [0.1, 0.9]
    rows = [sure_a] * (n0 * 8 // 10) + [sure_b] * (n0 * 2 // 10)
    rows += [sure_a] * (n1 * 3 // 10) + [sure_b] * (n1 * 7 // 10)
    return np.array(rows)


def test_acc_undoes_a_known_confusion():
    cal = _confused_faces(100, 100)
    cal_t = np.repeat([0, 1], 100)
    faces = _confused_faces(50, 150)  # true shares 0.25 / 0.75
    assert raw_shares(faces)[:2] == pytest.approx([0.425, 0.575])  # 40 + 45 faces said a
    assert adjusted_count(faces, cal, cal_t) == pytest.approx([0.25, 0.75], abs=1e-9)


def test_pacc_undoes_known_mean_probabilities():
    cal = np.array([[0.7, 0.3]] * 10 + [[0.2, 0.8]] * 10)
    cal_t = np.repeat([0, 1], 10)
    faces = np.array([[0.7, 0.3]] * 25 + [[0.2, 0.8]] * 75)
    assert prob_adjusted_count(faces, cal, cal_t) == pytest.approx([0.25, 0.75], abs=1e-9)


def test_screen_time_is_faces_repeated_by_their_seconds():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=40)
    cal, cal_t = rng.dirichlet([1, 1, 1], size=60), rng.integers(0, 3, 60)
    seconds = rng.integers(1, 5, size=40)
    repeated = np.repeat(probs, seconds, axis=0)
    for fn in (adjusted_count, prob_adjusted_count):
        assert fn(probs, cal, cal_t, weights=seconds) == pytest.approx(
            fn(repeated, cal, cal_t), abs=1e-9
        )
    assert raw_shares(probs, seconds) == pytest.approx(raw_shares(repeated))


def test_bootstrap_resamples_clusters_not_their_copies():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], size=60)
    cal, cal_t = rng.dirichlet([1, 1], size=40), np.repeat([0, 1], 20)
    copies = np.repeat(probs, 10, axis=0)  # one person in 10 frames each
    person = np.repeat(np.arange(60), 10)

    def sd(p, clusters):
        w = np.ones(len(p))
        reps = bootstrap_replicates(p, cal, cal_t, w, clusters, 0.5, 400,
                                    np.random.default_rng(1), adjust=False)  # fmt: skip
        return reps["raw"][:, 0].std()

    alone, by_person, by_frame = sd(probs, None), sd(copies, person), sd(copies, None)
    assert by_person == pytest.approx(alone, rel=0.2)
    assert by_frame < 0.5 * alone  # ten copies of each face look like ten times the evidence


def test_diagnose_names_thin_and_confused_classes():
    classes = ("a", "b", "c")
    rng = np.random.default_rng(0)
    cal = np.vstack([np.tile([0.8, 0.1, 0.1], (40, 1)), np.tile([0.1, 0.5, 0.4], (40, 1)),
                     np.tile([0.1, 0.45, 0.45], (5, 1))])  # fmt: skip
    cal_t = np.repeat([0, 1, 2], [40, 40, 5])
    d = diagnose(cal + rng.uniform(0, 1e-3, cal.shape), cal_t, classes)
    assert d.labels_per_class == {"a": 40, "b": 40, "c": 5}
    assert not d.stable
    assert any("few held-out labels of c (5)" in w for w in d.warnings)
    near = [w for w in d.warnings if w.startswith("pacc: near-singular")]
    assert near and "b" in near[0].split("tells")[1] and "c" in near[0].split("tells")[1]
    good = diagnose(np.eye(3)[np.repeat([0, 1, 2], 30)] * 0.9 + 0.1 / 3, np.repeat([0, 1, 2], 30),
                    classes)  # fmt: skip
    # 0.9 I + 0.1/3: singular values 1.0 and 0.9 (twice)
    assert good.stable and good.condition["pacc"] == pytest.approx(1 / 0.9)


def _skewed_case(n_cal: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A classifier that calls 30 % of class b "a", audited footage 90 % b."""
    rng = np.random.default_rng(seed)

    def faces(t):
        said_a = np.where(t == 0, rng.random(len(t)) < 0.9, rng.random(len(t)) < 0.3)
        conf = rng.uniform(0.6, 0.95, len(t))
        return np.where(said_a[:, None], np.c_[conf, 1 - conf], np.c_[1 - conf, conf])

    cal_t = np.repeat([0, 1], n_cal // 2)
    prog_t = (rng.random(600) < 0.9).astype(int)
    return faces(prog_t), prog_t, faces(cal_t), cal_t


def test_audit_leads_with_pacc_when_raw_is_biased_and_with_ppi_given_gold():
    probs, prog_t, cal, cal_t = _skewed_case(400)
    truth = np.bincount(prog_t, minlength=2) / len(prog_t)
    audit = audit_shares(probs, CLASSES, cal, cal_t, n_boot=200)
    assert set(audit.estimates) == {"raw", "acc", "pacc"}
    assert abs(audit.estimates["raw"].shares[1] - truth[1]) > 0.2  # 30 % of b said a
    assert audit.lead == "pacc" and audit.notes[0].startswith("pacc leads")
    for e in audit.estimates.values():
        assert (e.low <= e.shares + 1e-12).all() and (e.shares <= e.high + 1e-12).all()
    pacc = audit.estimates["pacc"]
    assert pacc.covers(truth).all() and abs(pacc.shares[1] - truth[1]) < 0.05
    gold = np.arange(0, 600, 6)
    with_gold = audit_shares(probs, CLASSES, cal, cal_t, gold=(gold, prog_t[gold]), n_boot=200)
    assert with_gold.lead == "ppi" and {"ppi", "classical"} <= set(with_gold.estimates)
    again = audit_shares(probs, CLASSES, cal, cal_t, n_boot=200)
    assert again.estimates["pacc"].low.tolist() == pacc.low.tolist()  # seeded bootstrap


def test_audit_keeps_raw_when_the_adjustment_is_noisier_than_the_bias():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, 400)  # balanced footage, a symmetric classifier: raw is unbiased
    said_right = rng.random(400) < 0.7
    probs = np.where((t == 0) == said_right, 1, 0)[:, None] * [0.8, 0.2]
    probs = probs + np.where((t == 0) != said_right, 1, 0)[:, None] * [0.2, 0.8]
    cal = np.array([[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8], [0.2, 0.8], [0.8, 0.2]])
    audit = audit_shares(probs, CLASSES, cal, np.array([0, 0, 0, 1, 1, 1]), n_boot=300)
    assert audit.lead == "raw" and "more noise" in audit.notes[0]
    assert any("few held-out labels of a (3), b (3)" in n for n in audit.notes)


def test_audit_without_labels_of_a_class_gives_raw_alone():
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    audit = audit_shares(probs, CLASSES, probs, np.array([0, 0]), n_boot=20)
    assert set(audit.estimates) == {"raw"} and audit.lead == "raw" and audit.mse == {}
    assert "no held-out labels of b" in audit.diagnostics.warnings[0]
    assert audit.to_dict()["estimates"]["raw"]["shares"]["a"]["share"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": np.array([[0.5, np.nan]])}, "finite"),
        ({"cal_targets": np.array([0, 2])}, "class indices in 0..1"),
        ({"weights": np.array([1.0, -1.0])}, "weights"),
        ({"clusters": np.array([1])}, "clusters"),
        ({"n_boot": 5}, "n_boot=5"),
    ],
)
def test_audit_refuses_bad_inputs(kwargs, message):
    args = {"probs": np.array([[0.9, 0.1], [0.3, 0.7]]), "classes": CLASSES,
            "cal_probs": np.array([[0.9, 0.1], [0.3, 0.7]]), "cal_targets": np.array([0, 1])}  # fmt: skip
    args |= kwargs
    with pytest.raises(QuantifyError, match=message):
        audit_shares(**{k: args.pop(k) for k in ("probs", "classes", "cal_probs", "cal_targets")},
                     **args)  # fmt: skip
