"""Training (`alface train`): retrain the classifier on the labeled set, evaluate it, record it.

One run: labels imported since the last run are promoted to train/val; the model is built
(backbone weights, or the latest model's when ``train.warm_start`` fits); Lightning fits it with
early stopping on labeled-val (``train.monitor``) and keeps the best checkpoint; the best
weights are evaluated on labeled-val, the overfitting set and the iteration-validation set.
The run folder WORKDIR/models/N/ (model.ckpt, config.yaml, metrics.json, metrics.csv) is
built as N.partial and renamed when complete, and only then recorded in the store: a run
killed at any point leaves the previous model the latest one, and its checkpoint untouched.

Under DDP (``train.trainer.devices``/``num_nodes``, see docs/SCALING.md) every rank runs
:func:`train`; global rank 0 alone promotes labels, writes the run folder and records the model.

``train.mode=linear_probe`` on one device takes the fast path of :mod:`alface.probe`: the frozen
backbone embeds every labeled face once and the head trains on those features.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from alface import probe
from alface.config import Config, dump_config
from alface.config_rules import MONITORS
from alface.data import ActiveDataModule
from alface.device import Devices, RankDone, is_global_zero, start_ranks
from alface.errors import AlfaceError
from alface.fsutil import PARTIAL, partial_dir, replace_dir, write_file
from alface.model import (
    FaceClassifier,
    ModelError,
    build_model,
    checkpoint_hparams,
    read_checkpoint,
)
from alface.progress import ProgressFn
from alface.scoring import inference_trainer
from alface.splits import promote_labeled
from alface.store import ModelRecord, Store
from alface.workdir import Workdir

log = logging.getLogger(__name__)

MODELS_DIR = "models"
CKPT_NAME = "model.ckpt"
# Lightning warnings that do not apply here: loaders read a memory-mapped cache (few workers
# are fine), a frozen backbone is in eval mode on purpose, no labeled-val yet, torch deprecation.
_QUIET = (
    ".*does not have many workers.*", ".*module\\(s\\) in eval mode.*", ".*LeafSpec.*",
    ".*no `val_dataloader`.*",
)  # fmt: skip


class TrainError(AlfaceError, ValueError):
    """Training cannot run as configured (no labels, an unknown monitor)."""


@dataclass(frozen=True)
class TrainResult:
    """A recorded model: store id, checkpoint, and its metrics per evaluation set."""

    model_id: int
    path: Path
    backbone: str
    n_labeled: int
    metrics: dict[str, dict[str, Any]]
    epochs: int
    warm_started: bool


Loaders = tuple[DataLoader, DataLoader | None, dict[str, DataLoader]]  # train, val, eval sets


def train(
    wd: Workdir,
    devices: Devices,
    progress: ProgressFn | None = None,
    iteration_id: int | None = None,
) -> TrainResult:
    """Retrain on the labeled set of ``wd``, evaluate on val/overfit/itval, record the model."""
    cfg, store = wd.cfg, wd.store
    check_monitor(cfg.train.monitor)
    tk = devices.trainer
    barrier = start_ranks(tk)  # under DDP every rank runs train(); only rank 0 writes
    refused: TrainError | None = None
    if is_global_zero():
        try:
            with store.transaction("train"):  # undone when there is nothing to train on
                settle_labels(wd, _round_of(store, iteration_id), iteration_id)
                check_trainable(store, cfg.data.val_fraction)
        except TrainError as e:
            refused = e
    barrier()
    if refused is not None:
        raise refused
    check_trainable(store, cfg.data.val_fraction)
    dm = ActiveDataModule(wd.root, cfg, pin_memory=devices.pin_memory)
    dm.prepare_data()
    dm.setup("fit")
    n_labeled = len(dm.labeled("train")) + len(dm.labeled("val"))
    run_dir = _start_run_dir(wd)
    with seeded(cfg.seed):
        weights = dm.class_weights() if cfg.train.class_balance == "weights" else None
        model = build_model(cfg, dm.num_classes, weights)
        warm = cfg.train.warm_start and warm_start(model, store)
        use_probe = probe.use_probe(cfg, tk)
        train_loader, val_loader, evals = (
            probe.probe_loaders(model, dm, tk) if use_probe else image_loaders(dm)
        )
        if cfg.train.head == "logreg":
            best, epochs = fit_logreg_loader(model, train_loader, cfg, run_dir, use_probe)
        else:
            best, epochs = fit(model, train_loader, val_loader, cfg, run_dir, tk, progress)
        metrics = evaluate(model, evals, tk)
    barrier()  # every rank has loaded the best checkpoint before rank 0 moves it
    if not is_global_zero():
        raise RankDone("model trained")
    path = _finish_run_dir(run_dir, best, cfg, metrics)
    rel = str(path.relative_to(wd.root))
    with store.transaction("train"):
        model_id = store.runs.add_model(rel, cfg.backbone.name, n_labeled, metrics, iteration_id)
    log.info("model %d: %s (%d labeled, %d epochs)", model_id, rel, n_labeled, epochs)
    return TrainResult(model_id, path, cfg.backbone.name, n_labeled, metrics, epochs, bool(warm))


def check_trainable(store: Store, val_fraction: float) -> None:
    """Raise TrainError, saying why, unless labeled-train holds a labeled face."""
    if store.labels.resolved(store.items.ids("train")):
        return
    n_val = len(store.labels.resolved(store.items.ids("val")))
    if n_val:
        raise TrainError(
            f"no labeled faces in train: all {n_val} labeled face(s) went to labeled-val "
            f"(data.val_fraction={val_fraction}); label more faces, or lower data.val_fraction"
        )
    raise TrainError("no labeled faces to train on: import labels (alface import-labels) first")


def settle_labels(wd: Workdir, round_id: int | None, iteration_id: int | None) -> None:
    """Before training: labeled pool faces to train/val by person (:mod:`alface.grouping`),
    and track labels propagated (``tracks.propagate``) or, when it is off, retracted."""
    from alface.annotate.propagate import propagate_labels, retract_propagated
    from alface.grouping import workdir_groups

    store, cfg = wd.store, wd.cfg
    groups = workdir_groups(wd)
    with store.transaction("train"):
        promote_labeled(store, cfg.data.val_fraction, round_id, iteration_id, groups)
        if cfg.tracks.propagate:  # proposals train with the promotion that follows
            propagate_labels(store, cfg.labels.classes, round_id, iteration_id)
            promote_labeled(store, cfg.data.val_fraction, round_id, iteration_id, groups)
        else:
            retract_propagated(store, round_id, iteration_id)


def image_loaders(dm: ActiveDataModule) -> Loaders:
    """(train, labeled-val or None, eval sets) image loaders of a set-up data module."""
    val = dm.val_dataloader() if len(dm.labeled("val")) else None
    return dm.train_dataloader(), val, dm.eval_dataloaders()


def fit_head(
    model: FaceClassifier,
    emb: np.ndarray,
    labels: np.ndarray,
    cfg: Config,
    tk: dict[str, Any],
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> FaceClassifier:
    """Train ``model``'s head on features ``emb`` (N, D) with ``labels`` (N,) int64.

    ``tk`` are the Trainer settings (:attr:`alface.device.Devices.trainer`); early stopping on
    ``val`` = (emb (M, D), labels (M,)) when given. Returns ``model``.
    """
    if cfg.train.head == "logreg":
        from alface.logreg_head import fit_logreg_head

        return fit_logreg_head(model, emb, labels, cfg)
    train_loader = probe.feature_loader(np.arange(len(emb)), emb, labels, cfg, train=True)
    val_loader = None if val is None else probe.feature_loader(np.arange(len(val[0])), *val, cfg)
    with seeded(cfg.seed), tempfile.TemporaryDirectory() as tmp:
        fit(model, train_loader, val_loader, cfg, Path(tmp), tk)
    return model


def fit_logreg_loader(
    model: FaceClassifier, loader: DataLoader, cfg: Config, run_dir: Path, use_probe: bool
) -> tuple[Path, int]:
    """``train.head=logreg`` on the features of a probe ``loader``; (checkpoint, 0 epochs)."""
    from alface.logreg_head import HeadError, fit_logreg_head

    if not use_probe:
        raise HeadError(
            "train.head=logreg needs the linear-probe fast path: train.mode=linear_probe on "
            "one device"
        )
    ds = loader.dataset
    fit_logreg_head(model, ds.emb.numpy(), ds.labels.numpy(), cfg)
    path = run_dir / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path, 0


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's CPU RNG seeded with ``seed`` inside, and restored after (the caller's is kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's warnings that do not apply to alface muted inside."""
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def check_monitor(monitor: str) -> None:
    """Raise TrainError unless ``monitor`` is a metric that validation logs."""
    if monitor not in MONITORS:
        raise TrainError(f"train.monitor={monitor!r}: use one of {', '.join(MONITORS)}")


def fit(
    model: FaceClassifier,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    cfg: Config,
    run_dir: Path,
    tk: dict[str, Any],
    progress: ProgressFn | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> tuple[Path, int]:
    """Fit ``model`` with early stopping on ``val_loader``; load the best weights back.

    Returns (best checkpoint under ``run_dir``, epochs run). Without a val loader the last
    epoch's weights are kept.
    """
    t = cfg.train
    check_monitor(t.monitor)
    mode = "min" if t.monitor.endswith("loss") else "max"
    monitor = t.monitor if val_loader is not None else None
    ckpt = ModelCheckpoint(
        run_dir / "checkpoints", "best", monitor, save_top_k=1, mode=mode,
        save_weights_only=True, enable_version_counter=False,
    )  # fmt: skip
    extra: list[L.Callback] = [ckpt, *callbacks]
    if monitor:
        extra.append(EarlyStopping(monitor, patience=t.patience, mode=mode))
    if progress:
        extra.append(ProgressCallback(progress))
    trainer = L.Trainer(
        **tk, max_epochs=t.max_epochs, min_epochs=min(t.min_epochs, t.max_epochs),
        callbacks=extra, logger=CSVLogger(run_dir, name="", version=""),
        default_root_dir=run_dir, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=max(1, min(50, len(train_loader))),
    )  # fmt: skip
    model.train()
    with quiet_lightning():
        trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    best = Path(ckpt.best_model_path or ckpt.last_model_path)
    if not best.is_file():
        raise TrainError("training ended without a checkpoint (no training batch ran?)")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    return best, trainer.current_epoch


def evaluate(
    model: FaceClassifier, loaders: dict[str, DataLoader], tk: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Metrics dicts (acc, macro_f1, recall, confusion) of ``model`` on each named loader."""
    if not loaders:
        return {}
    model.eval_names, model.results = list(loaders), {}
    with quiet_lightning():
        inference_trainer(tk).test(model, dataloaders=list(loaders.values()), verbose=False)
    return {name: model.results[name] for name in loaders if name in model.results}


def warm_start(model: FaceClassifier, store: Store) -> bool:
    """Load the latest model's weights into ``model`` when backbone, size and classes match."""
    record = store.runs.latest_model()
    if record is None:
        return False
    path = _model_path(store, record)
    try:
        ckpt = read_checkpoint(path)
    except ModelError as e:
        raise TrainError(
            f"train.warm_start: cannot load model {record.id} ({path}): {e}; set "
            "train.warm_start=false or restore it"
        ) from e
    prev = checkpoint_hparams(ckpt)
    same = (prev["backbone"]["name"], prev["backbone"]["image_size"], list(prev["classes"])) == (
        model.backbone_name, model.image_size, model.classes,
    )  # fmt: skip
    if not same:
        log.info("warm start skipped: model %d has another backbone, size or label set", record.id)
        return False
    model.load_state_dict(ckpt["state_dict"])
    log.info("warm start from model %d (%s)", record.id, record.path)
    return True


def _model_path(store: Store, record: ModelRecord) -> Path:
    p = Path(record.path)
    return p if p.is_absolute() else store.root / p


class ProgressCallback(L.Callback):
    """Reports training batches to a progress callback (total: every epoch's batches)."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.progress(0, total=trainer.max_epochs * trainer.num_training_batches, status="")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.progress(1, status=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k in MONITORS}
        status = " ".join(f"{k} {v:.3f}" for k, v in shown.items())
        self.progress(0, status=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {status}")


def _round_of(store: Store, iteration_id: int | None) -> int | None:
    """The round of ``iteration_id``, else the open round, else None."""
    if iteration_id is not None:
        return store.runs.iteration(iteration_id).round_id
    last = store.runs.current_round()
    return last.id if last is not None and last.state == "open" else None


def _start_run_dir(wd: Workdir) -> Path:
    """An empty WORKDIR/models/N.partial, N one more than the newest model's id (made by global
    rank 0; the other DDP ranks only get its path)."""
    last = wd.store.runs.latest_model()
    n = (last.id if last is not None else 0) + 1
    final = wd.path(MODELS_DIR, mkdir=True) / str(n)
    if is_global_zero():
        return partial_dir(final)  # emptied: a killed run may have left one
    return final.with_name(final.name + PARTIAL)


def _finish_run_dir(run_dir: Path, best: Path, cfg: Config, metrics: dict[str, Any]) -> Path:
    """Complete ``run_dir`` (checkpoint, config, metrics) and rename it; returns the checkpoint."""
    shutil.move(best, run_dir / CKPT_NAME)  # inside the folder being built
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    dump_config(cfg, run_dir / "config.yaml")
    write_file(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    # a folder of this name is left by a run killed after its rename, before the store took it
    final = replace_dir(run_dir, run_dir.with_name(run_dir.name.removesuffix(PARTIAL)))
    return final / CKPT_NAME
