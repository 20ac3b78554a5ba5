"""Pool scoring: softmax probabilities and penultimate embeddings, written to disk in batches.

A scoring folder (WORKDIR/scores/NAME/) holds ``ids.npy`` (N,) int64 ascending, ``probs.npy``
(N, K) float32 and ``emb.npy`` (N, D) float32; row i of each belongs to item ``ids[i]``.
:class:`ScoreWriter` writes every predicted batch at the rows of its ids, so memory holds one
batch at a time. Under DDP each rank scores its shard (Lightning's unpadded predict sampler)
and appends its rows to its own part files; global rank 0 then copies them to the rows of their
ids, so the files are the same bytes as a one-process run's, whatever the shards, and no two
processes write one file (safe on NFS). The folder is built as NAME.partial and renamed when
every row is written (alface.fsutil.replace_dir): a killed run leaves no half-written scores
under the final name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from alface.device import Devices, RankDone, is_global_zero
from alface.errors import AlfaceError
from alface.fsutil import PARTIAL, partial_dir, replace_dir
from alface.model import FaceClassifier
from alface.progress import ProgressFn
from alface.store import SCORE_FILES, SCORES_DIR, Scoring
from alface.workdir import Workdir

log = logging.getLogger(__name__)

FILES = SCORE_FILES
PARTS = {"item_id": np.int64, "probs": np.float32, "emb": np.float32}  # a DDP rank's raw part files


class ScoringError(AlfaceError):
    """Scores that cannot be written or read (no model, missing rows, missing files)."""


def create_score_files(folder: Path, ids: np.ndarray, num_classes: int, dim: int) -> None:
    """Write ``ids`` (N,) and allocate probs (N, K) and emb (N, D) float32 .npy files."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    for name, width in (("probs.npy", num_classes), ("emb.npy", dim)):
        arr = np.lib.format.open_memmap(folder / name, "w+", np.float32, (len(ids), width))
        arr.flush()
        del arr


def load_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (N,), probs (N, K), emb (N, D)) of a scoring folder, as read-only memmaps."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise ScoringError(
            f"{path} is not a complete scoring folder (missing {', '.join(missing)})"
        )
    ids, probs, emb = (np.load(path / f, mmap_mode="r") for f in FILES)
    if not len(ids) == len(probs) == len(emb):
        raise ScoringError(f"{path}: {len(ids)} ids, {len(probs)} probs, {len(emb)} embeddings")
    return ids, probs, emb


class ScoreWriter(BasePredictionWriter):
    """Writes each predicted batch into the score files at the rows of its item ids.

    Args:
        folder: where the files go (global rank 0 allocates them in ``setup``).
        ids: (N,) strictly ascending int64, the items the loader yields (in any order).
        num_classes, dim: widths of the probabilities and the embeddings.
        progress: called with the number of rows after each batch.
    """

    def __init__(
        self,
        folder: Path,
        ids: np.ndarray,
        num_classes: int,
        dim: int,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.ids = Path(folder), np.asarray(ids, dtype=np.int64)
        if len(self.ids) > 1 and not (np.diff(self.ids) > 0).all():
            raise ScoringError("item ids to score must be unique and ascending")
        self.num_classes, self.dim, self.progress = num_classes, dim, progress
        self.written = np.zeros(len(self.ids), dtype=bool)  # rows written (all ranks', at the end)
        self._arrays: dict[str, np.ndarray] = {}
        self._parts: dict[str, Any] = {}  # under DDP: this rank's open part files

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            create_score_files(self.folder, self.ids, self.num_classes, self.dim)
        trainer.strategy.barrier("score-files")
        if trainer.world_size > 1:
            rank = trainer.global_rank
            self._parts = {k: open(_part(self.folder, rank, k), "wb") for k in PARTS}  # noqa: SIM115
            return
        self._arrays = {
            k: np.load(self.folder / f"{k}.npy", mmap_mode="r+") for k in ("probs", "emb")
        }

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, torch.Tensor],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        item_ids = prediction["item_id"].cpu().numpy()
        rows = np.searchsorted(self.ids, item_ids).clip(max=max(len(self.ids) - 1, 0))
        if len(item_ids) and (self.ids[rows] != item_ids).any():
            raise ScoringError("the loader yielded items that are not in the ids to score")
        for key, arr in self._arrays.items():
            arr[rows] = prediction[key].cpu().numpy()
        for key, f in self._parts.items():
            f.write(np.ascontiguousarray(prediction[key].cpu().numpy(), PARTS[key]).tobytes())
        self.written[rows] = True
        _forget_batch_indices(trainer, batch_idx, dataloader_idx)
        if self.progress:
            self.progress(len(item_ids))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check that some rank wrote every row; under DDP rank 0 then merges the part files."""
        self._close()
        if trainer.world_size > 1:
            mask = torch.from_numpy(self.written).to(trainer.strategy.root_device, torch.uint8)
            self.written = trainer.strategy.reduce(mask, reduce_op="max").cpu().numpy() > 0
        if not self.written.all():
            missing = int((~self.written).sum())
            raise ScoringError(f"{missing} of {len(self.ids)} items were not scored")
        if trainer.world_size > 1 and trainer.is_global_zero:
            merge_parts(self.folder, self.ids, trainer.world_size)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        for arr in self._arrays.values():
            arr.flush()
        for f in self._parts.values():
            f.close()
        self._arrays, self._parts = {}, {}


def _part(folder: Path, rank: int, key: str) -> Path:
    """The part file of ``rank`` for ``key`` (item_id, probs, emb) in a scoring folder."""
    return folder / f"part{rank}.{key}"


def merge_parts(folder: Path, ids: np.ndarray, world_size: int, chunk: int = 65536) -> None:
    """Copy the rows of every rank's part files into the score files of ``folder`` at the rows
    of their ids (N,), ``chunk`` rows at a time; then delete the part files."""
    out = {k: np.load(folder / f"{k}.npy", mmap_mode="r+") for k in ("probs", "emb")}
    for rank in range(world_size):
        rows = np.searchsorted(ids, np.fromfile(_part(folder, rank, "item_id"), np.int64))
        for key, arr in out.items():
            if len(rows):
                shape = (len(rows), arr.shape[1])
                src = np.memmap(_part(folder, rank, key), np.float32, "r", shape=shape)
                for a in range(0, len(rows), chunk):
                    arr[rows[a : a + chunk]] = src[a : a + chunk]
        for key in PARTS:
            _part(folder, rank, key).unlink()
    for arr in out.values():
        arr.flush()


def _forget_batch_indices(trainer: L.Trainer, batch_idx: int, dataloader_idx: int) -> None:
    """Drop Lightning's record of the sample indices of a written batch.

    In predict mode Lightning keeps every batch's sample indices (for writers that ask for
    them); over millions of items that list alone takes hundreds of MB. Ours needs none.
    """
    loaders = trainer.predict_dataloaders
    loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
    seen = getattr(getattr(loader, "batch_sampler", None), "seen_batch_indices", None)
    if isinstance(seen, list) and batch_idx < len(seen):
        seen[batch_idx] = None


def inference_trainer(trainer_kwargs: dict[str, Any], callbacks: Sequence[Any] = ()) -> L.Trainer:
    """A Lightning Trainer for inference: no logger, progress bar or checkpoints."""
    return L.Trainer(
        **trainer_kwargs,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def write_scores(
    model: FaceClassifier,
    loader: DataLoader,
    ids: np.ndarray,
    folder: Path,
    trainer_kwargs: dict[str, Any],
    progress: ProgressFn | None = None,
) -> Path:
    """Score every item of ``loader`` (exactly the items ``ids``) into ``folder``; returns it."""
    folder = Path(folder)
    partial = folder.with_name(folder.name + PARTIAL)
    if is_global_zero():  # under DDP the other ranks run this too
        partial_dir(folder)
    writer = ScoreWriter(partial, ids, len(model.classes), model.embedding_dim, progress)
    trainer = inference_trainer(trainer_kwargs, [writer])
    try:
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    except BaseException:
        if trainer.is_global_zero:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    if trainer.is_global_zero:
        replace_dir(partial, folder)
    trainer.strategy.barrier("score-rename")
    return folder


def embed(
    model: FaceClassifier, loader: DataLoader, trainer_kwargs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids (N,), embeddings (N, D) float32) of every item of ``loader``, in memory."""
    out = inference_trainer(trainer_kwargs).predict(model, dataloaders=loader)
    if not out:
        return np.zeros(0, np.int64), np.zeros((0, model.embedding_dim), np.float32)
    ids = torch.cat([o["item_id"] for o in out]).numpy()
    return ids, torch.cat([o["emb"] for o in out]).numpy()


def score_pool(
    wd: Workdir,
    devices: Devices,
    ids: Sequence[int] | np.ndarray | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> Scoring:
    """Score the pool (or ``ids``) with the latest model into WORKDIR/scores/NAME; recorded.

    NAME defaults to ``model<ID>``. Images are read at the size the model was trained at,
    ``select.score_batch_size`` at a time, on ``devices``.
    """
    from alface.data import ActiveDataModule
    from alface.model import load_model

    record = wd.store.runs.latest_model()
    if record is None:
        raise ScoringError("no trained model yet: run `alface train` first")
    model = load_model(wd.root / record.path)
    overrides = None if ids is None else {"predict": np.unique(np.asarray(ids, dtype=np.int64))}
    dm = ActiveDataModule(
        wd.root, wd.cfg, ids=overrides, image_size=model.image_size,
        batch_size=wd.cfg.select.score_batch_size, pin_memory=devices.pin_memory,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("predict")
    todo = dm.splits["predict"]
    if progress:
        progress(0, total=len(todo))
    folder = wd.path(SCORES_DIR, mkdir=True) / (name or f"model{record.id}")
    write_scores(model, dm.predict_dataloader(), todo, folder, devices.trainer, progress)
    if not is_global_zero():
        raise RankDone("pool scored")  # rank 0 records the scoring and goes on alone
    rel = str(folder.relative_to(wd.root))
    with wd.store.transaction("score"):
        scoring_id = wd.store.runs.add_scoring(record.id, rel, len(todo))
    return wd.store.runs.scoring(scoring_id)
