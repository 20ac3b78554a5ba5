import random

import numpy as np
import pytest

from alface.curves import (
    Curve,
    CurveError,
    area_under_curve,
    auc_range,
    ceiling_share,
    collect_curves,
    labels_to_reach,
    summary_table,
    target_key,
)

LABELS = np.array([10, 20, 30])


def test_curve_spread_over_seeds():
    c = Curve(np.array([10, 20]), np.array([[0.2, 0.4], [0.4, 0.8]]))
    assert c.n_seeds == 2
    assert np.allclose(c.mean, [0.3, 0.6]) and np.allclose(c.std, [0.1, 0.2])
    assert np.allclose(c.min, [0.2, 0.4]) and np.allclose(c.max, [0.4, 0.8])
    assert c.to_dict()["metric"] == [[0.2, 0.4], [0.4, 0.8]]
    one = Curve(np.array([10, 20]), np.array([0.5, 0.6]))  # one seed as a 1-D row
    assert one.n_seeds == 1 and np.allclose(one.std, 0)


def test_curve_rejects_misaligned_or_unsorted_points():
    with pytest.raises(CurveError, match="align"):
        Curve(LABELS, np.zeros((2, 2)))
    with pytest.raises(CurveError, match="ascending"):
        Curve(np.array([10, 30, 20]), np.zeros((1, 3)))


def test_labels_to_reach_interpolates_between_points():
    mean = np.array([0.2, 0.5, 0.8])
    assert labels_to_reach(LABELS, mean, 0.65) == pytest.approx(25.0)
    assert labels_to_reach(LABELS, mean, 0.5) == pytest.approx(20.0)
    assert labels_to_reach(LABELS, mean, 0.1) == 10.0  # the first point already reaches it
    assert labels_to_reach(LABELS, mean, 0.9) is None
    dip = np.array([0.2, 0.7, 0.6, 0.9])  # first crossing counts, the later dip does not
    assert labels_to_reach(np.array([10, 20, 30, 40]), dip, 0.65) == pytest.approx(19.0)


def test_area_under_curve_is_normalised_by_label_range():
    assert area_under_curve(np.array([0, 10, 20]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert area_under_curve(LABELS, np.full(3, 0.4)) == pytest.approx(0.4)
    assert area_under_curve(np.array([5]), np.array([0.3])) == pytest.approx(0.3)


def test_summary_table_by_hand():
    random_ = Curve(LABELS, np.array([[0.1, 0.3, 0.5], [0.3, 0.5, 0.7]]))  # mean 0.2, 0.4, 0.6
    al = Curve(LABELS, np.array([[0.4, 0.6, 0.7]]))
    rows = {r["strategy"]: r for r in summary_table({"random": random_, "al": al})}
    # 95 % of 0.6 = 0.57: random crosses between 20 (0.4) and 30 (0.6) -> 28.5; al between 10 and 20 -> 18.5
    assert rows["random"]["target_95"] == pytest.approx(0.57)
    assert rows["random"]["labels_95"] == pytest.approx(28.5) and rows["al"][
        "labels_95"
    ] == pytest.approx(18.5)
    assert rows["al"]["ratio_95"] == pytest.approx(18.5 / 28.5) and rows["random"][
        "ratio_95"
    ] == pytest.approx(1.0)
    assert rows["random"]["labels_100"] == pytest.approx(30) and rows["al"][
        "labels_100"
    ] == pytest.approx(20)
    assert rows["al"]["ratio_100"] == pytest.approx(2 / 3)
    assert rows["random"]["auc"] == pytest.approx(0.4) and rows["al"]["auc"] == pytest.approx(0.575)
    assert rows["random"]["final"] == pytest.approx(0.6) and rows["random"][
        "final_std"
    ] == pytest.approx(0.1)
    assert rows["random"]["seeds"] == 2 and rows["al"]["seeds"] == 1


def test_summary_table_never_reached_and_errors():
    random_ = Curve(LABELS, np.array([[0.2, 0.4, 0.6]]))
    weak = Curve(LABELS, np.array([[0.1, 0.2, 0.3]]))
    row = summary_table({"random": random_, "weak": weak}, targets=(0.5, 1.0))[1]
    assert (
        row["labels_50"] == pytest.approx(30.0)  # 0.3 = 50 % of 0.6
        and row["ratio_50"] == pytest.approx(30 / 15)
        and row["labels_100"] is None
        and row["ratio_100"] is None
    )
    with pytest.raises(CurveError, match="no 'random' curve.*weak"):
        summary_table({"weak": weak})
    with pytest.raises(CurveError, match="other label counts"):
        summary_table({"random": random_, "x": Curve(np.array([10, 20, 40]), np.zeros((1, 3)))})


def test_target_key():
    assert [target_key(f) for f in (0.95, 1.0, 0.975, 0.5)] == ["95", "100", "97.5", "50"]


def test_collect_curves_from_benchmark_points():
    points = [
        {
            "strategy": s,
            "seed": seed,
            "labels": n,
            "metrics": {"macro_f1": v + seed / 10, "acc": 0.0},
        }
        for s, base in (("random", 0.1), ("entropy", 0.3))
        for seed in (0, 1)
        for n, v in zip(LABELS, base + np.array([0.0, 0.1, 0.2]), strict=True)
    ]
    random.Random(0).shuffle(points)
    curves = collect_curves(points, "macro_f1")
    assert set(curves) == {"random", "entropy"}
    assert np.array_equal(curves["random"].labels, LABELS)
    assert np.allclose(curves["entropy"].metric, [[0.3, 0.4, 0.5], [0.4, 0.5, 0.6]])
    with pytest.raises(CurveError, match="no metric 'auc'"):
        collect_curves(points, "auc")
    with pytest.raises(CurveError, match="different label counts"):
        collect_curves(points[:-1], "macro_f1")


def test_auc_over_a_range_interpolates_the_ends():
    labels, mean = np.array([100.0, 200.0, 400.0]), np.array([0.2, 0.4, 0.8])
    assert area_under_curve(labels, mean) == pytest.approx((30 + 120) / 300)
    # [150, 300]: 0.3 -> 0.4 over 50, 0.4 -> 0.6 over 100: (17.5 + 50) / 150
    assert area_under_curve(labels, mean, 150, 300) == pytest.approx(67.5 / 150)
    assert area_under_curve(labels, mean, 50, 500) == area_under_curve(labels, mean)  # clipped
    assert area_under_curve(labels, mean, 50, 100) == pytest.approx(0.2)  # one point left
    assert auc_range(labels, 50, 150) == (100.0, 150.0)
    with pytest.raises(CurveError, match="empty"):
        area_under_curve(labels, mean, 300, 200)


def test_labels_to_reach_a_share_of_each_seeds_ceiling():
    base = Curve(np.array([10, 20, 30]), np.array([[0.5, 0.7, 0.8], [0.3, 0.5, 0.6]]), (0, 1))
    fast = Curve(np.array([10, 20, 30]), np.array([[0.6, 0.8, 0.8], [0.4, 0.6, 0.6]]), (0, 1))
    ceiling = {0: 0.8, 1: 0.6}
    # shares per seed: base (.625,.875,1) and (.5,.833,1) -> mean (.5625, .854, 1)
    assert np.allclose(ceiling_share(base, ceiling), [0.5625, (0.875 + 5 / 6) / 2, 1.0])
    rows = summary_table({"random": base, "fast": fast}, (1.0,), ceiling=ceiling,
                         ceiling_target=0.9, low_range=(10, 20))  # fmt: skip
    b, f = rows
    assert b["ceiling"] == pytest.approx(0.7) and b["ratio_c90"] == 1.0
    # fast: shares (.75, 1, 1) and (.667, 1, 1): mean .708 -> 1.0 ; 0.9 reached at 10 + 10 * .192/.292
    assert f["labels_c90"] == pytest.approx(10 + 10 * (0.9 - 0.7083333) / (1 - 0.7083333))
    assert f["ratio_c90"] == pytest.approx(f["labels_c90"] / b["labels_c90"])
    assert f["auc_low"] == pytest.approx(0.6) and f["auc_low_range"] == [10.0, 20.0]
    with pytest.raises(CurveError, match="no ceiling for seed"):
        ceiling_share(base, {0: 0.8})
    with pytest.raises(CurveError, match="without seeds"):
        ceiling_share(Curve(np.array([1]), np.array([0.5])), ceiling)


def test_collect_curves_keeps_the_seed_of_each_row():
    pts = [{"strategy": "random", "seed": s, "labels": n, "metrics": {"acc": s + n / 100}}
           for s in (1, 0) for n in (10, 20)]  # fmt: skip
    c = collect_curves(pts, "acc")["random"]
    assert c.seeds == (0, 1) and np.allclose(c.metric[1], [1.1, 1.2])
