"""The classifier: any timm backbone with a linear head, as a LightningModule (FaceClassifier).

FaceClassifier takes plain typed values (a :class:`~alface.backbones.BackboneSpec`, the class
names, the training hyper-parameters, class weights, augmentation), saved in its checkpoint, so
:func:`load_model` restores it from the checkpoint alone; :func:`build_model` maps a Config
onto it. Weights: ``backbone.weights: PATH`` (a local file, checked to have really loaded),
else ``backbone.pretrained: true`` (the Hugging Face hub), else random. ``mode``: ``finetune``
trains everything (backbone at ``lr``, head at ``head_lr``); ``linear_probe`` freezes the
backbone (kept in eval mode) and trains the head only. Batches are the data contract of
:mod:`alface.data` (uint8 images are normalised, and augmented while training, by the model
itself with :mod:`alface.transforms`, so any loader works), or ``{"emb", "label"}`` feature
batches that go straight to the head (the fast linear probe, :mod:`alface.probe`).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from alface.backbones import BackboneSpec, backbone_spec  # (registers mtcnn_onet with timm)
from alface.config import AugmentConfig, Config, from_dict
from alface.errors import AlfaceError
from alface.metrics import eval_metrics, metrics_dict
from alface.transforms import BatchTransform

log = logging.getLogger(__name__)

EVAL_NAMES = ("val", "overfit", "itval", "test")  # sets the model keeps metrics for
MODES = ("finetune", "linear_probe")
Batch = dict[str, torch.Tensor]


class ModelError(AlfaceError, ValueError):
    """A backbone, weights file or checkpoint that cannot be used."""


def create_backbone(b: BackboneSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The timm model ``b.name`` with a ``num_classes`` head.

    Weights (when ``load_weights``): the local file ``b.weights``, else the hub when
    ``b.pretrained``, else random. ViT-like models are built for ``b.image_size``.
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": b.drop_rate}
    path = Path(b.weights) if load_weights and b.weights else None
    if path is not None:
        if not path.is_file():
            raise ModelError(f"backbone.weights: no such file {path}")
        kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    elif load_weights and b.pretrained:
        kwargs["pretrained"] = True
    try:
        model = _create(b.name, b.image_size, kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not kwargs.get("pretrained") or isinstance(e, AlfaceError):
            raise
        where = str(path) if path else "the Hugging Face hub (network needed on first use)"
        raise ModelError(
            f"cannot load {b.name} weights from {where}: {' '.join(str(e).split())[:200]}; "
            "set backbone.weights=PATH or backbone.pretrained=false"
        ) from e
    if path is not None:
        _check_loaded(model, path, b.name)
    if hasattr(model, "set_input_norm"):  # a network outside torch un-normalises its inputs
        model.set_input_norm(b.mean, b.std)
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
        backbone: the backbone with its resolved data config (or its plain-dict form).
        classes: the class names, one per head output.
        mode: ``finetune`` or ``linear_probe`` (frozen backbone, head only).
        lr, head_lr: AdamW learning rates of the backbone and of the head.
        weight_decay: AdamW weight decay.
        class_weights: (K,) weights of the cross-entropy loss, or None for plain.
        augment: train-time augmentation (or its plain-dict form); None: none.
        load_weights: load hub or file weights (off when a checkpoint supplies them).

    Every argument but ``load_weights`` is kept, as plain values, in the checkpoint.
    """

    def __init__(
        self,
        backbone: BackboneSpec | Mapping[str, Any],
        classes: Sequence[str],
        mode: Literal["finetune", "linear_probe"] = "finetune",
        lr: float = 1e-4,
        head_lr: float = 1e-3,
        weight_decay: float = 1e-4,
        class_weights: Sequence[float] | None = None,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        load_weights: bool = False,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ModelError(f"train.mode={mode!r}: use one of {', '.join(MODES)}")
        if not classes:
            raise ModelError("a classifier needs at least one class")
        if class_weights is not None and len(class_weights) != len(classes):
            raise ModelError(f"{len(class_weights)} class weights for {len(classes)} classes")
        if not isinstance(backbone, BackboneSpec):
            backbone = BackboneSpec.from_dict(backbone)
        if augment is not None and not isinstance(augment, AugmentConfig):
            augment = AugmentConfig(**augment)
        self.spec, self.classes, self.mode = backbone, [str(c) for c in classes], mode
        weights = None if class_weights is None else [float(w) for w in class_weights]
        self.save_hyperparameters(
            {"backbone": _plain(backbone), "classes": self.classes, "mode": mode, "lr": lr,
             "head_lr": head_lr, "weight_decay": weight_decay, "class_weights": weights,
             "augment": None if augment is None else _plain(augment)}
        )  # fmt: skip
        self.model = create_backbone(backbone, len(self.classes), load_weights)
        if mode == "finetune" and getattr(self.model, "frozen_only", False):
            raise ModelError(
                f"backbone {backbone.name} cannot be fine-tuned (it runs outside torch, without "
                "gradients): set train.mode=linear_probe"
            )
        self.frozen = mode == "linear_probe"
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
        loss_weights = torch.tensor(weights, dtype=torch.float32) if weights else None
        self.register_buffer("loss_weights", loss_weights, persistent=False)
        self.metrics = nn.ModuleDict({n: eval_metrics(len(self.classes)) for n in EVAL_NAMES})
        self.train_loss = MeanMetric()
        self.transforms = {
            t: BatchTransform(backbone.mean, backbone.std, augment, train=t) for t in (True, False)
        }
        self.eval_names: list[str] = ["val"]  # the test dataloaders' set names, in order
        self.results: dict[str, dict[str, Any]] = {}  # set name -> metrics dict (last epoch)
        self._updated: set[str] = set()  # sets with batches since their metrics were computed

    @property
    def backbone_name(self) -> str:
        """The timm model name of the backbone."""
        return self.spec.name

    @property
    def image_size(self) -> int:
        """Side of the square uint8 crops the model reads (the crops are resized to it)."""
        return self.spec.image_size

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean of 0..1 RGB pixels that inputs are normalised with."""
        return self.spec.mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel standard deviation that inputs are normalised with."""
        return self.spec.std

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
        """AdamW: the head at ``head_lr``; the backbone at ``lr`` unless frozen."""
        hp = self.hparams
        head = list(self.head.parameters())
        head_ids = {id(p) for p in head}
        groups = [{"params": head, "lr": hp.head_lr}]
        if not self.frozen:
            rest = [p for p in self.model.parameters() if id(p) not in head_ids]
            groups.insert(0, {"params": rest, "lr": hp.lr})
        return torch.optim.AdamW(groups, weight_decay=hp.weight_decay)


def build_model(
    cfg: Config, num_classes: int, class_weights: Sequence[float] | torch.Tensor | None = None
) -> FaceClassifier:
    """A FaceClassifier for ``cfg`` with hub, file or random backbone weights.

    Classes are ``cfg.labels.classes`` when there are ``num_classes`` of them, else "0".."K-1".
    """
    names = cfg.labels.classes
    classes = list(names) if len(names) == num_classes else [str(k) for k in range(num_classes)]
    weights = None if class_weights is None else [float(w) for w in class_weights]
    t = cfg.train
    return FaceClassifier(
        backbone_spec(cfg.backbone, cfg.data.image_size), classes, t.mode, t.lr, t.head_lr,
        t.weight_decay, weights, cfg.data.augment, load_weights=True,
    )  # fmt: skip


def load_model(path: str | Path) -> FaceClassifier:
    """The FaceClassifier saved in checkpoint ``path`` (on the CPU), from the file alone."""
    ckpt = read_checkpoint(path)
    try:
        model = FaceClassifier(**checkpoint_hparams(ckpt))
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, AlfaceError):
            raise
        raise ModelError(f"cannot load checkpoint {path}: {' '.join(str(e).split())[:200]}") from e
    return model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors on the CPU; plain values only, no code run)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's safe loader refused what the file holds
        raise ModelError(
            f"cannot load checkpoint {path}: it holds objects a safe load refuses (not a "
            "checkpoint alface wrote?); train again (alface train) or restore it"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ModelError(f"cannot load checkpoint {path}: {' '.join(str(e).split())[:200]}") from e
    if not isinstance(ckpt, dict) or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ModelError(f"{path} is not an alface model checkpoint (no hyper-parameters)")
    return ckpt


def checkpoint_hparams(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """FaceClassifier's keyword arguments saved in checkpoint dict ``ckpt``.

    Checkpoints written before the narrow constructor kept the whole config (``cfg``) and
    ``num_classes``; they are mapped onto the same arguments.
    """
    hp = dict(ckpt["hyper_parameters"])
    if "cfg" not in hp:
        return hp
    cfg, k = from_dict(hp["cfg"]), int(hp["num_classes"])
    names, t = cfg.labels.classes, cfg.train
    return {
        "backbone": _plain(backbone_spec(cfg.backbone, cfg.data.image_size)),
        "classes": list(names) if len(names) == k else [str(i) for i in range(k)],
        "mode": t.mode, "lr": t.lr, "head_lr": t.head_lr, "weight_decay": t.weight_decay,
        "class_weights": hp.get("class_weights"), "augment": _plain(cfg.data.augment),
    }  # fmt: skip


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of plain values (tuples as lists), fit for a checkpoint."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}
