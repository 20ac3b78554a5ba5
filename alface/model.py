"""The classifier: any timm backbone with a linear head, as a LightningModule (FaceClassifier).

``backbone.name`` is any timm model name. Weights: ``backbone.weights: PATH`` (a local file,
checked to have really loaded), else ``backbone.pretrained: true`` (the Hugging Face hub), else
random. ``train.mode``: ``finetune`` trains everything (backbone at ``train.lr``, head at
``train.head_lr``); ``linear_probe`` freezes the backbone (kept in eval mode) and trains the
head only. Batches are the data contract of :mod:`alface.data` (uint8 images are normalised,
and augmented while training, by the model itself, so any loader works), or ``{"emb", "label"}``
feature batches that go straight to the head (the fast linear probe, :mod:`alface.probe`).
"""

from __future__ import annotations

import difflib
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

import alface.backbones  # noqa: F401  (registers mtcnn_onet, face-trained, with timm)
from alface.config import Config, from_dict, to_dict
from alface.data import BatchTransform
from alface.errors import AlfaceError
from alface.metrics import eval_metrics, metrics_dict

log = logging.getLogger(__name__)

EVAL_NAMES = ("val", "overfit", "itval", "test")  # sets the model keeps metrics for
Batch = dict[str, torch.Tensor]


class ModelError(AlfaceError, ValueError):
    """A backbone, weights file or checkpoint that cannot be used."""


def check_model_name(name: str) -> None:
    """Raise ModelError, listing close matches, when timm has no model ``name``."""
    if timm.is_model(name):
        return
    close = timm.list_models(f"*{name}*")[:8]
    close = close or difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    raise ModelError(f"unknown timm model {name!r}; {hint}")


def create_backbone(cfg: Config, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The timm model ``cfg.backbone.name`` with a ``num_classes`` head.

    Weights (when ``load_weights``): the local file ``backbone.weights``, else the hub when
    ``backbone.pretrained``, else random. ViT-like models are built for ``cfg.image_size``.
    """
    b = cfg.backbone
    check_model_name(b.name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": b.drop_rate}
    path = Path(b.weights).expanduser() if load_weights and b.weights else None
    if path is not None:
        if not path.is_file():
            raise ModelError(f"backbone.weights: no such file {path}")
        kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    elif load_weights and b.pretrained:
        kwargs["pretrained"] = True
    try:
        model = _create(b.name, cfg.image_size, kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not kwargs.get("pretrained"):
            raise
        where = str(path) if path else "the Hugging Face hub (network needed on first use)"
        raise ModelError(
            f"cannot load {b.name} weights from {where}: {' '.join(str(e).split())[:200]}; "
            "set backbone.weights=PATH or backbone.pretrained=false"
        ) from e
    if path is not None:
        _check_loaded(model, path, b.name)
    return model


def _create(name: str, image_size: int, kwargs: dict[str, Any]) -> nn.Module:
    """timm.create_model, with ``img_size`` for the models that take it (ViTs) when it differs."""
    default = timm.get_pretrained_cfg_value(name, "input_size") or (3, image_size, image_size)
    if default[-1] != image_size:
        try:
            return timm.create_model(name, img_size=image_size, **kwargs)
        except TypeError as e:  # a CNN: any input size works
            if "img_size" not in str(e):
                raise
    return timm.create_model(name, **kwargs)


def _check_loaded(model: nn.Module, path: Path, name: str) -> None:
    """Raise ModelError unless some non-constant backbone tensor of ``model`` equals the file's.

    timm only warns when a file's keys do not fit the model, and leaves random weights; a
    constant tensor (BatchNorm's ones and zeros) equals a fresh model's, so it proves nothing.
    """
    saved = timm.models.load_state_dict(str(path))
    head = {f"{n}.{p}" for n, m in model.named_modules() if m is model.get_classifier()
            for p, _ in m.named_parameters()}  # fmt: skip
    own = {k: v for k, v in model.state_dict().items() if k not in head and v.is_floating_point()}
    loaded = [k for k, v in own.items() if k in saved and saved[k].shape == v.shape
              and torch.equal(saved[k].to(v.dtype), v)]  # fmt: skip
    if not any(own[k].numel() > 1 and bool((own[k] != own[k].flatten()[0]).any()) for k in loaded):
        sample = ", ".join(list(saved)[:3]) or "none"
        raise ModelError(
            f"backbone.weights {path}: no tensor fits timm model {name} (file keys: {sample}, ...); "
            "was it saved from this architecture?"
        )
    if len(loaded) < len(own):
        log.warning("%s: %d of %d backbone tensors loaded", path, len(loaded), len(own))


class FaceClassifier(L.LightningModule):
    """A timm classifier trained with Lightning; predicts softmax probabilities and embeddings.

    Args:
        cfg: the resolved config as a plain dict (:func:`alface.config.to_dict`), kept in
            the checkpoint beside the weights.
        num_classes: size of the head.
        class_weights: (K,) weights of the cross-entropy loss, or None for plain.
        load_weights: load hub or file weights (off when a checkpoint supplies them).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        load_weights: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["load_weights"])
        self.config = from_dict(cfg)
        self.model = create_backbone(self.config, num_classes, load_weights)
        classes = self.config.labels.classes
        self.classes = [str(c) for c in classes] if len(classes) == num_classes else []
        self.classes = self.classes or [str(k) for k in range(num_classes)]
        self.frozen = self.config.train.mode == "linear_probe"
        if self.frozen:
            self.model.requires_grad_(False)
            self.head.requires_grad_(True)
        # A frozen backbone's features can have any scale (a random init gives std ~0.02):
        # standardising them makes the head train in a few epochs at any learning rate.
        self.feature_norm = (
            # momentum None: running stats average every batch seen (the features do not
            # drift); a tiny eps: random-init features can have a std of ~1e-5
            nn.BatchNorm1d(self.embedding_dim, eps=1e-12, momentum=None, affine=False)
            if self.frozen
            else nn.Identity()
        )
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("loss_weights", weights, persistent=False)
        self.metrics = nn.ModuleDict({n: eval_metrics(num_classes) for n in EVAL_NAMES})
        self.train_loss = MeanMetric()
        self.transforms = {t: BatchTransform(self.config, train=t) for t in (True, False)}
        self.eval_names: list[str] = ["val"]  # the test dataloaders' set names, in order
        self.results: dict[str, dict[str, Any]] = {}  # set name -> metrics dict (last epoch)
        self._updated: set[str] = set()  # sets with batches since their metrics were computed

    @property
    def head(self) -> nn.Module:
        """The classifier layer (what a linear probe trains)."""
        return self.model.get_classifier()

    @property
    def embedding_dim(self) -> int:
        """Width of the penultimate embedding (the head's input)."""
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def train(self, mode: bool = True) -> FaceClassifier:
        """Set train mode; a frozen backbone stays in eval mode (BatchNorm, dropout)."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of normalised images (B, 3, S, S)."""
        return self.embed_logits(x)[1] if self.frozen else self.model(x)

    def classify(self, emb: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of penultimate embeddings (B, D)."""
        if self.frozen and self.training and len(emb) < 2:  # batch statistics need two rows
            return self.head(F.batch_norm(emb, self.feature_norm.running_mean,
                                          self.feature_norm.running_var, training=False))  # fmt: skip
        return self.head(self.feature_norm(emb))

    def embed_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate embeddings (B, D) and logits (B, K) in one pass."""
        emb = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return emb, self.classify(emb)

    def images(self, batch: Batch) -> torch.Tensor:
        """The batch's images, normalised (and augmented while training) when still uint8."""
        if batch["image"].dtype == torch.uint8:
            batch = self.transforms[self.training](batch)
        return batch["image"]

    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits (B, K) of an image batch, or of a feature batch (``emb`` (B, D))."""
        if "emb" in batch:
            return self.classify(batch["emb"])
        return self(self.images(batch))

    # -- steps -----------------------------------------------------------------------------
    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, logits (B, K) and targets (B,) of a labeled batch (train, val and test)."""
        logits = self.logits(batch)
        y = batch["label"]
        loss = F.cross_entropy(logits.float(), y, weight=self.loss_weights)
        return loss, logits, y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, y = self.model_step(batch)
        # A running mean logged once per epoch: self.log on every step costs ~1 ms, which is
        # several per cent of a small model's step on a CPU.
        self.train_loss.update(loss.detach(), len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss.compute(), prog_bar=True)
        self.train_loss.reset()

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, self.eval_names[dataloader_idx])

    def _eval_step(self, batch: Batch, name: str) -> None:
        loss, logits, y = self.model_step(batch)
        self.metrics[name].update(logits.argmax(dim=1), y)
        self._updated.add(name)
        self.log(
            f"{name}/loss", loss, on_epoch=True, add_dataloader_idx=False, batch_size=len(y),
            sync_dist=True,  # early stopping may watch it: every DDP rank must see one value
        )  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.metrics["val"].reset()
            self._updated.discard("val")
        else:
            self._log_metrics(["val"])

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.eval_names)

    def _log_metrics(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._updated:
                continue
            self.results[name] = r = metrics_dict(self.metrics[name].compute(), self.classes)
            self.log(f"{name}/acc", r["acc"], add_dataloader_idx=False)
            self.log(f"{name}/macro_f1", r["macro_f1"], prog_bar=True, add_dataloader_idx=False)
            self.metrics[name].reset()
            self._updated.discard(name)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        """``item_id`` (B,), softmax ``probs`` (B, K) and ``emb`` (B, D), float32."""
        emb, logits = self.embed_logits(self.images(batch))
        probs = logits.float().softmax(dim=1)
        return {"item_id": batch["item_id"], "probs": probs, "emb": emb.float()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW: the head at train.head_lr; the backbone at train.lr unless frozen."""
        t = self.config.train
        head = list(self.head.parameters())
        head_ids = {id(p) for p in head}
        groups = [{"params": head, "lr": t.head_lr}]
        if not self.frozen:
            rest = [p for p in self.model.parameters() if id(p) not in head_ids]
            groups.insert(0, {"params": rest, "lr": t.lr})
        return torch.optim.AdamW(groups, weight_decay=t.weight_decay)


def build_model(
    cfg: Config, num_classes: int, class_weights: Sequence[float] | torch.Tensor | None = None
) -> FaceClassifier:
    """A FaceClassifier for ``cfg`` with hub, file or random backbone weights."""
    weights = None if class_weights is None else [float(w) for w in class_weights]
    return FaceClassifier(to_dict(cfg), num_classes, weights, load_weights=True)


def load_model(path: str | Path) -> FaceClassifier:
    """The FaceClassifier saved in checkpoint ``path`` (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no checkpoint at {path}")
    try:
        return FaceClassifier.load_from_checkpoint(path, map_location="cpu")
    except pickle.UnpicklingError as e:  # torch's safe loader refused what the file holds
        raise ModelError(
            f"cannot load checkpoint {path}: it holds objects a safe load refuses (not a "
            "checkpoint alface wrote?); train again (alface train) or restore it"
        ) from e
    except (RuntimeError, KeyError, EOFError, ValueError, OSError) as e:
        raise ModelError(f"cannot load checkpoint {path}: {' '.join(str(e).split())[:200]}") from e
