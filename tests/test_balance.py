import numpy as np
import pytest
import torch

from alface.balance import BalanceError, balanced_sampler, class_counts, class_weights


def test_class_weights_by_hand():
    # 4 items: class 0 three times, class 1 once, class 2 absent -> N / (K_present * n_k)
    w = class_weights(np.array([0, 0, 1, 0]), 3)
    np.testing.assert_allclose(w, [4 / (2 * 3), 4 / (2 * 1), 1.0])
    assert w[[0, 0, 1, 0]].mean() == pytest.approx(1.0)  # the average item weight is 1
    np.testing.assert_allclose(class_weights(torch.tensor([1, 1]), 2), [1.0, 1.0])
    np.testing.assert_allclose(class_weights([], 2), [1.0, 1.0])  # nothing labeled yet


def test_balanced_sampler_by_hand():
    labels = np.array([0, 0, 0, 1])
    sampler = balanced_sampler(labels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        sampler.weights, torch.tensor([1 / 3] * 3 + [1.0], dtype=torch.double)
    )
    assert sampler.num_samples == 4 and sampler.replacement
    again = balanced_sampler(labels, torch.Generator().manual_seed(0))
    assert list(sampler) == list(again)  # the generator decides the draw
    draws = np.concatenate([labels[list(sampler)] for _ in range(500)])
    assert abs((draws == 1).mean() - 0.5) < 0.05  # one item of four, drawn half the time


def test_labels_outside_the_classes_are_refused():
    assert class_counts([2, 0, 2], 3).tolist() == [1, 0, 2]
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(BalanceError, match="outside the 3 classes"):
            class_weights(bad, 3)


def test_the_feature_loader_draws_balanced_batches():
    from alface.config import Config
    from alface.probe import feature_loader

    cfg = Config().replace("train.class_balance=sampler", "data.batch_size=4")
    labels = np.array([0] * 9 + [1] * 3)
    loader = feature_loader(np.arange(12), np.zeros((12, 2), np.float32), labels, cfg, train=True)
    drawn = torch.cat([b["label"] for _ in range(100) for b in loader])
    assert len(drawn) == 1200 and abs(float((drawn == 1).float().mean()) - 0.5) < 0.06
    plain = feature_loader(np.arange(12), np.zeros((12, 2), np.float32), labels, cfg)
    assert torch.cat([b["label"] for b in plain]).tolist() == labels.tolist()  # eval: in order
