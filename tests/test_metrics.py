import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score

from alface.metrics import eval_metrics, metrics_dict, probs_metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=50)  # class 4 never occurs
    p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 5, size=50))
    m = eval_metrics(5)
    m.update(torch.tensor(p[:20]), torch.tensor(y[:20]))
    m.update(torch.tensor(p[20:]), torch.tensor(y[20:]))
    r = metrics_dict(m.compute(), ["a", "b", "c", "d", "e"])
    assert r["n"] == 50 and r["acc"] == pytest.approx((p == y).mean())
    assert r["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert r["confusion"] == confusion_matrix(y, p, labels=range(5)).tolist()
    assert r["recall"]["e"] is None
    assert r["recall"]["a"] == pytest.approx(((p == 0) & (y == 0)).sum() / (y == 0).sum())


def test_metrics_of_probabilities_by_hand():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]], dtype=np.float32)
    r = probs_metrics(probs, np.array([0, 1, 1]), ["a", "b", "c"])  # predicted: a, b, a
    assert r["n"] == 3 and r["acc"] == pytest.approx(2 / 3)
    assert r["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert r["recall"] == {"a": 1.0, "b": 0.5, "c": None}
    # F1 of a: precision 1/2, recall 1 -> 2/3; of b: precision 1, recall 1/2 -> 2/3; c absent
    assert r["macro_f1"] == pytest.approx(2 / 3)
