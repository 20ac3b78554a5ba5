import hashlib
import json
import math

import numpy as np
import pytest

from alface.annotate.agreement import (
    cohen_kappa,
    drift,
    pair_table,
    per_class,
    raw_agreement,
    summarize,
    total_variation,
)
from alface.config import Config
from alface.store import NewItem, Store

# A 3-class hand example. Pairs: xx xx xy yy yy zz zx zz xx yz -> 7 of 10 agree (po = 0.7).
# Marginals: a = (x 4, y 3, z 3), b = (x 4, y 3, z 3) -> pe = (16 + 9 + 9) / 100 = 0.34.
# kappa = (0.7 - 0.34) / (1 - 0.34) = 0.36 / 0.66 = 6/11.
A3 = list("xxxyyzzzxy")
B3 = list("xxyyyzxzxz")


def test_kappa_hand_values():
    # 2 x 2 (the textbook example): 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
    # po = 35/50 = 0.7; a says yes 25 times, b 30 times: pe = (25*30 + 25*20) / 50**2 = 0.5.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b, ["yes", "no"]) == pytest.approx(0.4)
    assert raw_agreement(a, b) == pytest.approx(0.7)
    assert cohen_kappa(A3, B3, "xyz") == pytest.approx(6 / 11)
    assert cohen_kappa(A3, A3, "xyz") == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["x"] * 4, ["x"] * 4, "xyz"))  # chance agreement is 1
    assert math.isnan(cohen_kappa([], [], "xyz"))


def test_per_class_hand_values():
    pc = per_class(A3, B3, "xyz")
    # x: both 3 (items 1, 2, 9), a 4, b 4 -> 2*3 / 8; one-vs-rest 2 x 2: [[3, 1], [1, 5]],
    # po = 0.8, pe = 0.4*0.4 + 0.6*0.6 = 0.52 -> kappa = 0.28 / 0.48 = 7/12.
    assert pc["x"]["agreement"] == pytest.approx(0.75)
    assert pc["x"]["kappa"] == pytest.approx(7 / 12)
    assert pc["y"]["agreement"] == pytest.approx(4 / 6) and pc["z"]["n_b"] == 3


@pytest.mark.parametrize("seed", range(5))
def test_kappa_matches_sklearn(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d", "e"]
    a = list(rng.choice(classes[:4], size=60))
    b = [x if rng.random() < 0.6 else str(rng.choice(classes)) for x in a]
    assert cohen_kappa(a, b, classes) == pytest.approx(cohen_kappa_score(a, b, labels=classes))
    for c in classes[:4]:
        ova = cohen_kappa_score([x == c for x in a], [x == c for x in b])
        assert per_class(a, b, classes)[c]["kappa"] == pytest.approx(ova)


def test_drift_is_total_variation_from_the_others():
    labels = {
        "alice": {1: "W", 2: "W", 3: "W", 4: "B"},  # (0.75, 0.25)
        "bob": {1: "W", 2: "B"},
        "carol": {3: "W", 4: "B"},  # pooled bob + carol: (0.5, 0.5)
    }
    d = drift(labels, ["W", "B"])
    assert d["alice"]["drift"] == pytest.approx(0.25)  # 0.5 * (0.25 + 0.25)
    assert d["alice"]["distribution"] == {"W": 0.75, "B": 0.25} and d["alice"]["n_others"] == 4
    assert total_variation(np.array([1, 0]), np.array([0, 3])) == pytest.approx(1.0)
    table = pair_table(labels, ["W", "B"])
    assert [(r["a"], r["b"], r["n"]) for r in table] == [("alice", "bob", 2), ("alice", "carol", 2)]


def _store(tmp_path, n):
    s = Store.open(tmp_path, create=True)
    recs = [NewItem(f"crops/{i}.jpg", hashlib.sha1(str(i).encode()).hexdigest()) for i in range(n)]
    with s.transaction("test"):
        return s, s.items.add(recs, pool=1)


def test_summarize_warns_on_low_kappa_and_drift(tmp_path):
    store, ids = _store(tmp_path, 40)
    classes = Config().labels.classes
    rng = np.random.default_rng(0)
    alice = [classes[k] for k in rng.integers(0, 5, 40)]
    bob = [x if k % 2 else "White" for k, x in enumerate(alice)]  # agrees on half, then White
    with store.transaction("test"):
        store.labels.annotate([(i, x, "alice") for i, x in zip(ids, alice, strict=True)])
        store.labels.annotate([(i, x, "bob") for i, x in zip(ids, bob, strict=True)])
        store.labels.annotate([(ids[0], "Black", "rita")], kind="review")
        store.labels.annotate([(ids[1], alice[1], "oracle")], kind="oracle")
    s = summarize(store, Config())
    json.dumps(s)  # JSON-ready for `alface status --json`
    (pair,) = s["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("alice", "bob", 40)
    assert pair["kappa"] == pytest.approx(cohen_kappa(alice, bob, classes))
    assert pair["agreement"] == pytest.approx(
        np.mean([x == y for x, y in zip(alice, bob, strict=True)])
    )
    assert set(s["annotators"]) == {"alice", "bob"}  # reviews and the oracle are not compared
    disagree = {i for i, x, y in zip(ids, alice, bob, strict=True) if x != y} - {ids[0]}
    assert s["review_queue"] == len(disagree)
    assert any("kappa" in w and "alice and bob" in w for w in s["warnings"])
    assert any(w.startswith("bob's labels drift") for w in s["warnings"])
    cfg = Config().replace("annotate.kappa_warning=0.0", "annotate.drift_warning=1.0")
    assert summarize(store, cfg)["warnings"] == []
    store.close()
