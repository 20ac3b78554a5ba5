import numpy as np
import pytest
import torch

from alface.benchmark import predict_probs, train_probe
from alface.config import ConfigError, load_config
from alface.logreg_head import HeadError, fit_logreg, n_folds, standardise
from alface.model import build_model
from alface.training import fit_head

TK = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
      "precision": "32-true"}  # fmt: skip


def cfg(*more):
    return load_config(None, ["backbone=test_resnet", "train.mode=linear_probe",
                              "backbone.pretrained=false", "train.head=logreg", *more])  # fmt: skip


def blobs(n=300, d=96, k=3, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return (rng.normal(size=(n, d)) * 3 + 5 + scale * np.eye(k, d)[y]).astype(np.float32), y


def test_standardise_and_folds_by_hand():
    mean, var = standardise(np.array([[1.0, 2.0], [3.0, 2.0]]))
    assert mean.tolist() == [2.0, 2.0] and var.tolist() == [1.0, 1.0]  # constant -> 1
    assert n_folds(np.array([0, 0, 0, 1]), 5) == 3  # capped by the largest class
    assert n_folds(np.array([0, 1]), 5) == 2


def test_the_head_is_sklearns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs()
    c = cfg("train.head_cs=[0.05]", "train.class_balance=none")
    model = fit_head(build_model(c, 3), x, y, c, TK)
    xs = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=0.05, max_iter=2000).fit(xs, y)
    np.testing.assert_allclose(predict_probs(model, x), ref.predict_proba(xs), atol=1e-4)
    assert model.head_c == 0.05


def test_c_is_chosen_by_cross_validation_on_the_training_labels():
    x, y = blobs(n=240, scale=0.6)
    grid = [1e-4, 1e-2, 1e2]
    seen = {fit_logreg((x - x.mean(0)) / x.std(0), y, 3, cfg(f"train.head_cs={grid}"), s)[2]
            for s in range(2)}  # fmt: skip
    assert seen <= set(grid) and seen != {1e2}  # 96 noisy features, 240 labels: regularise
    coef, intercept, c = fit_logreg(x[:40], y[:40], 5, cfg(), 0)  # classes 3, 4 absent
    assert coef.shape == (5, 96) and (coef[3:] == 0).all() and (intercept[3:] == -30).all()


def test_binary_one_class_and_bad_settings():
    x, y = blobs(n=60, k=2)
    coef, intercept, _ = fit_logreg(x, y, 2, cfg("train.head_cs=[1.0]"), 0)
    logit = x @ coef.T + intercept
    assert (logit.argmax(1) == y).mean() > 0.9  # softmax over the two rows
    coef, intercept, c = fit_logreg(x, np.zeros(60, int), 3, cfg(), 0)
    assert np.isnan(c) and intercept.argmax() == 0 and (coef == 0).all()
    with pytest.raises(ConfigError, match="train.head_cs=.0.0.: must be a non-empty list"):
        cfg("train.head_cs=[0.0]")  # refused with the config, before any fit
    with pytest.raises(HeadError, match="linear_probe"):
        fit_head(build_model(cfg("train.mode=finetune"), 2), x, y, cfg("train.mode=finetune"), TK)


def test_benchmark_probe_with_logreg_is_seeded_and_beats_chance():
    x, y = blobs(n=300, scale=6.0)
    a = train_probe(cfg(), x[:200], y[:200], 3, 7, TK)
    b = train_probe(cfg(), x[:200], y[:200], 3, 7, TK)
    assert torch.equal(a.head.weight, b.head.weight)
    assert (predict_probs(a, x[200:]).argmax(1) == y[200:]).mean() > 0.6


def test_alface_train_path_writes_a_checkpoint_that_loads_back(tmp_path):
    from alface.model import load_model
    from alface.probe import feature_loader
    from alface.training import fit_logreg_loader

    x, y = blobs(n=90, scale=6.0)
    c = cfg()
    model = build_model(c, 3)
    loader = feature_loader(np.arange(len(x)), x, y, c, train=True)
    path, epochs = fit_logreg_loader(model, loader, c, tmp_path, use_probe=True)
    assert epochs == 0 and path.is_file()
    np.testing.assert_allclose(predict_probs(load_model(path), x), predict_probs(model, x),
                               atol=1e-6)  # fmt: skip
    with pytest.raises(HeadError, match="linear-probe fast path"):
        fit_logreg_loader(build_model(c, 3), loader, c, tmp_path, use_probe=False)
