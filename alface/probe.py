"""Linear probe on cached features: the frozen backbone embeds each face once, the head trains
on the embeddings (far faster than images on a CPU; no augmentation).

Feature batches are ``{"emb": float32 (B, D), "label": int64 (B,), "item_id": int64 (B,)}``;
:class:`alface.model.FaceClassifier` sends them straight to its head, so training, early
stopping, checkpoints and metrics are the same code as on images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alface.balance import balanced_sampler
from alface.config import Config
from alface.data import EVAL_SETS, ActiveDataModule, collate_batch
from alface.model import FaceClassifier
from alface.scoring import embed


class FeatureDataset(Dataset):
    """Embeddings ``emb`` (N, D) of items ``ids`` (N,) with ``labels`` (N,) int64."""

    def __init__(self, ids: np.ndarray, emb: np.ndarray, labels: np.ndarray) -> None:
        self.ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        self.emb = torch.as_tensor(np.asarray(emb, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"emb": self.emb[idx], "label": self.labels[idx], "item_id": self.ids[idx]}


def feature_loader(
    ids: np.ndarray, emb: np.ndarray, labels: np.ndarray, cfg: Config, train: bool = False
) -> DataLoader:
    """Batches of features; shuffled (class-balanced with train.class_balance=sampler) when
    ``train``, in order otherwise."""
    ds = FeatureDataset(ids, emb, labels)
    bs, sampler = cfg.data.batch_size, None
    if train and cfg.train.class_balance == "sampler":
        sampler = balanced_sampler(labels, torch.Generator().manual_seed(cfg.seed))
    return DataLoader(
        ds, batch_size=bs, shuffle=train and sampler is None, sampler=sampler,
        drop_last=train and len(ds) > bs, collate_fn=collate_batch,
    )  # fmt: skip


def use_probe(cfg: Config, trainer_kwargs: dict[str, Any]) -> bool:
    """Whether training takes the cached-feature path: linear probe on a single device."""
    devices = trainer_kwargs["devices"]
    single = devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)
    single = single or (devices == "auto" and trainer_kwargs["accelerator"] == "cpu")
    return cfg.train.mode == "linear_probe" and single and trainer_kwargs["num_nodes"] == 1


def probe_loaders(
    model: FaceClassifier, dm: ActiveDataModule, trainer_kwargs: dict[str, Any]
) -> tuple[DataLoader, DataLoader | None, dict[str, DataLoader]]:
    """(train, labeled-val or None, {eval set: loader}) feature loaders; one embedding pass."""
    sets = {s: dm.labeled(s) for s in ("train", *EVAL_SETS)}
    ids, emb = embed(model, dm.loader_for(np.unique(np.concatenate(list(sets.values())))),
                     trainer_kwargs)  # fmt: skip

    def loader(s: str, train: bool = False) -> DataLoader:
        rows = np.searchsorted(ids, sets[s])
        return feature_loader(sets[s], emb[rows], dm.labels_of(sets[s]), dm.cfg, train)

    evals = {s: loader(s) for s in EVAL_SETS if len(sets[s])}
    return loader("train", train=True), evals.get("val"), evals
