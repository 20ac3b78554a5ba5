"""Classification metrics of one evaluation set (torchmetrics), and their plain-dict form.

The dict form is what the store, reports and the loop read::

    {"n": 120, "acc": 0.81, "macro_f1": 0.74,
     "recall": {"White": 0.9, "Black": 0.7, ...},   # None for a class with no items in the set
     "confusion": [[...], ...]}                      # rows: true class, columns: predicted

Macro-F1 averages over the classes present in the targets or the predictions (as
scikit-learn does by default), so a class that a small set lacks does not count as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)

METRIC_NAMES = ("acc", "macro_f1", "recall", "confusion")


def eval_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, macro-F1, per-class recall and the confusion matrix over ``num_classes``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="none"),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
    )


def metrics_dict(computed: dict[str, torch.Tensor], classes: Sequence[str]) -> dict[str, Any]:
    """The plain dict (see the module docstring) of a computed :func:`eval_metrics` collection."""
    confusion = computed["confusion"].long().cpu()
    support = confusion.sum(dim=1)
    recall = computed["recall"].float().cpu()
    return {
        "n": int(support.sum()),
        "acc": float(computed["acc"]),
        "macro_f1": float(computed["macro_f1"]),
        "recall": {
            str(c): (float(recall[k]) if support[k] else None) for k, c in enumerate(classes)
        },
        "confusion": confusion.tolist(),
    }


def probs_metrics(probs: Any, target: Any, classes: Sequence[str]) -> dict[str, Any]:
    """The metrics dict of predictions ``probs`` (N, C) against class indices ``target`` (N,)."""
    collection = eval_metrics(len(classes))
    collection.update(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(target))
    return metrics_dict(collection.compute(), classes)
