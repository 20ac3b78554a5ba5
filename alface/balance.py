"""Class balance of a labeled set: inverse-frequency loss weights and a balanced sampler.

``train.class_balance=weights`` weights the loss with :func:`class_weights`;
``train.class_balance=sampler`` draws training batches with :func:`balanced_sampler`. The image
loaders (:mod:`alface.data`), the feature loaders (:mod:`alface.probe`) and the benchmark all
use these two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from alface.errors import AlfaceError


class BalanceError(AlfaceError, ValueError):
    """Labels that are not class indices of the label set."""


def class_counts(labels: np.ndarray | Sequence[int] | torch.Tensor, num_classes: int) -> np.ndarray:
    """Items per class (K,) int64 of class indices ``labels`` (N,) in [0, ``num_classes``)."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise BalanceError(f"label index {bad} is outside the {num_classes} classes (0..K-1)")
    return np.bincount(y, minlength=num_classes)


def class_weights(
    labels: np.ndarray | Sequence[int] | torch.Tensor, num_classes: int
) -> np.ndarray:
    """Inverse class frequency (K,) float64 of ``labels`` (N,): N / (K_present * n_k).

    The average weight over the N items is 1; a class absent from ``labels`` gets 1.
    """
    counts = class_counts(labels, num_classes)
    present = max(int((counts > 0).sum()), 1)
    return np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 1.0)


def balanced_sampler(
    labels: np.ndarray | Sequence[int] | torch.Tensor, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """Draws N of the items with ``labels`` (N,) with replacement, every present class equally
    likely: item i has weight 1 / n_(labels[i])."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = class_counts(y, int(y.max()) + 1 if len(y) else 0)
    return WeightedRandomSampler((1.0 / counts[y]).tolist(), len(y), generator=generator)
