"""Data: a batched Dataset over face crops and the ActiveDataModule over the store's splits.

Batch contract (what every loader here yields): a dict with
``image`` uint8 (B, 3, S, S) (a channels-last view), ``label`` int64 (B,) (-1: no resolved
label), ``item_id`` int64 (B,). :class:`alface.transforms.BatchTransform` turns ``image`` into
normalised float32 (and augments it while training) on whole batches on the device; the
DataModule applies it in ``on_after_batch_transfer``, the model does for raw batches itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alface.balance import balanced_sampler, class_weights
from alface.cache import CropCache, load_crop
from alface.config import Config
from alface.device import running_ranks
from alface.errors import AlfaceError
from alface.progress import ProgressFn, quiet_lightning_logs
from alface.store import Store
from alface.transforms import BatchTransform

log = logging.getLogger(__name__)
quiet_lightning_logs()

SPLIT_NAMES = ("train", "val", "overfit", "itval", "pool", "test")
EVAL_SETS = ("val", "overfit", "itval")
Batch = dict[str, torch.Tensor]


class DataError(AlfaceError, ValueError):
    """Data the loaders cannot use (labels outside the label set, unknown ids)."""


class CropDataset(Dataset):
    """Crops of ``ids`` (N,) with ``labels`` (N,) int64 (-1: none), from a cache or JPEGs.

    ``__getitems__`` builds a whole batch with one slice of the cache, so a DataLoader with a
    batch size (and :func:`collate_batch`) reads each batch in one go.
    """

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        size: int,
        cache: CropCache | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.ids):
            raise DataError(f"{len(self.labels)} labels for {len(self.ids)} items")
        if cache is None and (paths is None or len(paths) != len(self.ids)):
            raise DataError("a CropDataset needs a crop cache or one crop path per item")
        self.size, self.cache, self.paths = size, cache, paths
        self.rows = cache.index_of(self.ids) if cache is not None else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        if self.rows is not None:
            images = self.cache.images(self.rows[idx])
        elif len(idx):
            images = np.stack([load_crop(self.paths[i], self.size) for i in idx])
        else:
            images = np.empty((0, self.size, self.size, 3), np.uint8)
        return {
            "image": torch.from_numpy(images).permute(0, 3, 1, 2),
            "label": torch.from_numpy(self.labels[idx]),
            "item_id": torch.from_numpy(self.ids[idx]),
        }

    def __getitem__(self, index: int) -> Batch:
        """One item: image (3, S, S) uint8, label and item_id as 0-d int64 tensors."""
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def collate_batch(batch: Batch | list[Batch]) -> Batch:
    """The DataLoader's collate: batches from ``__getitems__`` pass through; items are stacked."""
    if isinstance(batch, Mapping):
        return dict(batch)
    return {k: torch.stack([b[k] for b in batch]) for k in ("image", "label", "item_id")}


class ActiveDataModule(L.LightningDataModule):
    """Loaders over the store's splits: labeled train/val, pool, overfitting and itval sets.

    ``ids`` overrides a split's ids (keys: train, val, overfit, itval, pool, test, predict).
    The store is read in :meth:`setup` into arrays (nothing holding a connection reaches the
    worker processes); :meth:`refresh` re-reads it after the splits changed.
    """

    def __init__(
        self,
        workdir_root: str | Path,
        cfg: Config,
        ids: Mapping[str, Sequence[int] | np.ndarray] | None = None,
        progress: ProgressFn | None = None,
        image_size: int | None = None,
        batch_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        """``image_size`` and ``batch_size`` default to the config's; ``pin_memory`` when a CUDA
        device takes the batches (:attr:`alface.device.Devices.pin_memory`)."""
        super().__init__()
        self.root, self.cfg, self.progress = Path(workdir_root), cfg, progress
        self.batch_size = batch_size or cfg.data.batch_size
        self.pin_memory = pin_memory
        self.overrides = {k: np.asarray(v, dtype=np.int64) for k, v in (ids or {}).items()}
        unknown = set(self.overrides) - {*SPLIT_NAMES, "predict"}
        if unknown:
            raise DataError(
                f"unknown split(s) {sorted(unknown)}; use {', '.join(SPLIT_NAMES)}, predict"
            )
        self.size = image_size or cfg.image_size
        self.train_transform = BatchTransform.from_config(cfg, train=True)
        self.eval_transform = BatchTransform.from_config(cfg, train=False)
        self.cache: CropCache | None = None
        self.splits: dict[str, np.ndarray] = {}
        self._generator = torch.Generator().manual_seed(cfg.seed)  # the balanced sampler's
        self._ready = False

    @property
    def num_classes(self) -> int:
        """Number of classes in the label set."""
        return len(self.cfg.labels.classes)

    # -- reading the store ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build the crop cache on disk (Lightning runs this once per node)."""
        if self.cfg.data.cache:
            with Store.open(self.root) as store:
                self._build_cache(store)

    def setup(self, stage: str | None = None) -> None:
        """Read ids, labels and crop paths from the store, and open the cache (once)."""
        if self._ready:
            return
        with Store.open(self.root) as store:
            self.splits = {s: store.items.ids(s) for s in SPLIT_NAMES} | self.overrides
            self.splits.setdefault("predict", self.splits["pool"])
            self._read_labels(store.labels.resolved())
            items = store.items.get()
            self._all_ids = np.array([i.id for i in items], dtype=np.int64)
            self._paths = [str(i.crop_file(store.root)) for i in items]
            self.cache = self._build_cache(store) if self.cfg.data.cache else None
        self._ready = True

    def refresh(self) -> None:
        """Re-read the store (after splits or labels changed)."""
        self._ready = False
        self.setup()

    def _build_cache(self, store: Store) -> CropCache:
        ids = store.items.ids([s for s in SPLIT_NAMES])
        ids = np.union1d(ids, np.concatenate([np.zeros(0, np.int64), *self.overrides.values()]))
        return CropCache.build(store, ids, self.size, self.progress, self.cfg.data.num_workers)

    def _read_labels(self, labels: dict[int, str]) -> None:
        index = {c: i for i, c in enumerate(self.cfg.labels.classes)}
        bad = sorted({v for v in labels.values() if v not in index})
        if bad:
            raise DataError(
                f"labels {bad[:5]} are not in labels.classes ({', '.join(self.cfg.labels.classes)})"
            )
        self._label_ids = np.array(sorted(labels), dtype=np.int64)
        self._label_cls = np.array([index[labels[i]] for i in self._label_ids], dtype=np.int64)

    def labels_of(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Class index (int64) of each id; -1 where there is no resolved label."""
        self._check_ready()
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self._label_ids):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.searchsorted(self._label_ids, ids).clip(0, len(self._label_ids) - 1)
        return np.where(self._label_ids[pos] == ids, self._label_cls[pos], -1)

    def labeled(self, split: str) -> np.ndarray:
        """Ids of ``split`` that have a resolved label (ascending)."""
        self._check_ready()
        ids = self.splits[split]
        return ids[self.labels_of(ids) >= 0]

    def _check_ready(self) -> None:
        if not self._ready:
            raise DataError("call ActiveDataModule.setup() first")

    # -- datasets and loaders ------------------------------------------------------------------
    def dataset(self, ids: np.ndarray | Sequence[int]) -> CropDataset:
        """A CropDataset over ``ids`` (in the order given) with their labels."""
        self._check_ready()
        ids = np.asarray(ids, dtype=np.int64)
        paths = None
        if self.cache is None:
            pos = np.searchsorted(self._all_ids, ids).clip(0, max(len(self._all_ids) - 1, 0))
            if len(ids) and (not len(self._all_ids) or (self._all_ids[pos] != ids).any()):
                raise DataError("unknown item ids given to the data module")
            paths = [self._paths[p] for p in pos]
        return CropDataset(ids, self.labels_of(ids), self.size, self.cache, paths)

    def loader_for(
        self, ids: np.ndarray | Sequence[int], train: bool = False, sampler: Any = None
    ) -> DataLoader:
        """A loader over ``ids``: shuffled (or ``sampler``) when ``train``, in order otherwise."""
        ds = self.dataset(ids)
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            # a last batch of 1 breaks BatchNorm; under DDP each rank gets its shard of ``ds``
            drop_last=train and -(-len(ds) // running_ranks()) > self.batch_size,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Labeled-train, shuffled; class-balanced sampling when train.class_balance=sampler."""
        ids = self.labeled("train")
        if not len(ids):
            raise DataError("labeled-train is empty: label some faces (and promote them) first")
        sampler = None
        if self.cfg.train.class_balance == "sampler":
            sampler = balanced_sampler(self.labels_of(ids), self._generator)
        return self.loader_for(ids, train=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        """Labeled-val (early stopping)."""
        return self.loader_for(self.labeled("val"))

    def test_dataloader(self) -> DataLoader:
        """The labeled 'test' split (benchmarks)."""
        return self.loader_for(self.labeled("test"))

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Loaders over the labeled items of val, overfit and itval (only non-empty ones)."""
        return {s: self.loader_for(ids) for s in EVAL_SETS if len(ids := self.labeled(s))}

    def predict_dataloader(self) -> DataLoader:
        """The pool (or the 'predict' ids given), in ascending id order, for scoring."""
        self._check_ready()
        return self.loader_for(self.splits["predict"])

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency in labeled-train (K,) float32 (alface.balance.class_weights)."""
        w = class_weights(self.labels_of(self.labeled("train")), self.num_classes)
        return torch.tensor(w, dtype=torch.float32)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Normalise (and augment while training) the batch on its device."""
        training = self.trainer is not None and self.trainer.training
        return (self.train_transform if training else self.eval_transform)(batch)
