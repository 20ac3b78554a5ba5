"""Backbones: the spec a model is built from, its data config from timm, and extra timm models.

A backbone is a timm model name; its input size and normalisation come from the model's
pretrained config, as timm resolves them (``timm.data.resolve_data_config``), unless the config
overrides them (``backbone.input_size``/``mean``/``std``, ``data.image_size``):
:func:`backbone_spec` turns a :class:`~alface.config.BackboneConfig` into a
:class:`BackboneSpec` with every value resolved, which the model keeps in its checkpoint.

Models that timm does not ship are registered as timm models (``timm.create_model(NAME)``).
``mtcnn_onet``: the convolutional trunk of MTCNN's O-Net (facenet-pytorch), trained on faces
(face / not face, box and landmarks). Its weights ship inside the facenet-pytorch package, so
it is the one face-trained backbone available offline. The last conv map (128 channels) is
average-pooled to a 3 x 3 grid: 1,152 features, at any input size of 48 px or more. On
UTKFace race it beats a random-init EfficientNet-B0 as a frozen feature extractor by ~0.15
macro-F1 (docs/BENCHMARKS.md); it is not meant for fine-tuning whole images at scale. ``dlib_resnet`` (:mod:`alface.dlib_resnet`,
the optional extra ``alface[dlib]``): dlib's 128-d face-recognition ResNet, frozen only.

Importing this module registers the models.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_data_config
from timm.models import generate_default_cfgs, register_model
from torch import nn

from alface.errors import AlfaceError

if TYPE_CHECKING:
    from alface.config import BackboneConfig

ONET_POOL = 3  # the conv map is pooled to ONET_POOL x ONET_POOL cells
ONET_CHANNELS = 128
# MTCNN feeds (x - 127.5) / 128 of 0..255 RGB: in timm terms mean 0.5, std 128 / 255.
ONET_MEAN = (0.5, 0.5, 0.5)
ONET_STD = (128 / 255,) * 3


# Models that read one input size only (timm's ``fixed_input_size`` also marks ViTs, which
# alface rebuilds for any size): name -> side in px. Registered by the model's module.
FIXED_INPUT_SIZE: dict[str, int] = {}


class BackboneError(AlfaceError, ValueError):
    """A registered backbone that cannot be built (missing or unfitting weights)."""


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone with every value resolved: what a model is built from and fed with.

    ``image_size``: side of the square RGB input; ``mean``/``std``: per-channel normalisation
    of 0..1 pixels; ``weights``: a local weights file (used instead of the hub when set).
    """

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: bool = False
    weights: str | None = None
    drop_rate: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneSpec:
        """The spec of a plain mapping (a checkpoint's hyper-parameters)."""
        data = dict(data)
        for key in ("mean", "std"):
            data[key] = tuple(float(v) for v in data[key])
        return cls(**data)


def check_model_name(name: str) -> None:
    """Raise BackboneError, listing close matches, when timm has no model ``name``."""
    if timm.is_model(name):
        return
    close = timm.list_models(f"*{name}*")[:8]
    close = close or difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    raise BackboneError(f"unknown timm model {name!r}; {hint}")


def default_image_size(name: str) -> int:
    """The side of the square input timm's pretrained config of model ``name`` gives."""
    return data_config(name)[0]


def data_config(
    name: str,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[int, tuple[float, float, float], tuple[float, float, float]]:
    """(image size, mean, std) of timm model ``name``: the given values, else its pretrained
    config's (``timm.data.resolve_data_config``), as timm resolves them for its transforms."""
    check_model_name(name)
    for key, value in (("mean", mean), ("std", std)):
        if value is not None and len(value) != 3:
            raise BackboneError(f"backbone.{key}: expected 3 values (RGB), got {list(value)}")
    args = {"input_size": None if image_size is None else (3, image_size, image_size),
            "mean": mean, "std": std}  # fmt: skip
    pretrained = timm.get_pretrained_cfg(name)
    cfg = resolve_data_config(args, pretrained_cfg=pretrained.to_dict() if pretrained else {})
    chans, height, width = cfg["input_size"]
    if chans != 3 or height != width:
        raise BackboneError(
            f"timm model {name!r} expects inputs of {chans} x {height} x {width}, not square RGB; "
            "set backbone.input_size=N (and backbone.mean/std for 3 channels)"
        )
    mean3, std3 = tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"]))
    if len(mean3) != 3 or len(std3) != 3:
        raise BackboneError(
            f"timm model {name!r} has {len(mean3)}-channel normalisation; set backbone.mean "
            "and backbone.std to 3 values"
        )
    if min(std3) <= 0:
        raise BackboneError(f"backbone.std must be positive, got {list(std3)}")
    if height < 1:
        raise BackboneError(f"timm model {name!r}: image size must be >= 1 px, got {height}")
    fixed = FIXED_INPUT_SIZE.get(name)
    if fixed is not None and height != fixed:
        raise BackboneError(
            f"timm model {name!r} takes {fixed} px inputs only, not {height}: set "
            f"data.image_size and backbone.input_size to null or {fixed}"
        )
    return int(height), mean3, std3  # type: ignore[return-value]


def backbone_spec(b: BackboneConfig, image_size: int | None = None) -> BackboneSpec:
    """The spec of config ``b``; ``image_size`` (``data.image_size``) wins over
    ``b.input_size``, which wins over the model's default."""
    size, mean, std = data_config(b.name, image_size or b.input_size, b.mean, b.std)
    weights = str(Path(b.weights).expanduser()) if b.weights else None
    return BackboneSpec(b.name, size, mean, std, b.pretrained, weights, b.drop_rate)


class OnetTrunk(nn.Module):
    """MTCNN O-Net's conv layers, pooled features (B, 1152) and a linear classifier."""

    def __init__(self, num_classes: int = 2, drop_rate: float = 0.0, in_chans: int = 3) -> None:
        super().__init__()
        # Layer names as in facenet_pytorch's ONet, so its state dict loads as is.
        self.conv1, self.prelu1 = nn.Conv2d(in_chans, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, ONET_CHANNELS, 2), nn.PReLU(ONET_CHANNELS)
        self.num_features = self.head_hidden_size = ONET_CHANNELS * ONET_POOL**2
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.classifier: nn.Module = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv map (B, 128, h, w) of normalised images (B, 3, S, S), S >= 48."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        return self.prelu4(self.conv4(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features (B, 1152) when ``pre_logits``, else logits (B, K)."""
        x = F.adaptive_avg_pool2d(x, ONET_POOL).flatten(1)
        if pre_logits:
            return x
        return self.classifier(F.dropout(x, self.drop_rate, self.training))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def onet_weights_path() -> Path:
    """facenet-pytorch's O-Net weights file (ships inside the package)."""
    import facenet_pytorch

    return Path(facenet_pytorch.__file__).parent / "data" / "onet.pt"


def _load_trunk(model: OnetTrunk, path: Path) -> None:
    """Load the conv layers of ``path`` (an O-Net or OnetTrunk state dict) into ``model``."""
    if not path.is_file():
        raise BackboneError(f"mtcnn_onet weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    trunk = {k: v for k, v in state.items() if not k.startswith(("dense", "classifier"))}
    missing, _ = model.load_state_dict(trunk, strict=False)
    missing = [k for k in missing if not k.startswith("classifier")]
    if missing:
        raise BackboneError(f"{path} lacks O-Net layers {', '.join(missing[:4])}")


default_cfgs = generate_default_cfgs(
    {
        "mtcnn_onet": {
            "input_size": (3, 96, 96),
            "min_input_size": (3, 48, 48),
            "mean": ONET_MEAN,
            "std": ONET_STD,
            "num_classes": 0,
            "classifier": "classifier",
            "license": "MIT (facenet-pytorch); weights from the MTCNN authors",
        }
    }
)


@register_model
def mtcnn_onet(pretrained: bool = False, **kwargs: Any) -> OnetTrunk:
    """MTCNN O-Net trunk; ``pretrained`` loads facenet-pytorch's weights (no network), or
    the file in ``pretrained_cfg_overlay["file"]`` when given."""
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    for key in ("pretrained_cfg", "cache_dir", "img_size"):  # any input size works
        kwargs.pop(key, None)
    model = OnetTrunk(**kwargs)
    cfg = default_cfgs["mtcnn_onet"].default.to_dict()
    model.pretrained_cfg = model.default_cfg = {**cfg, "architecture": "mtcnn_onet"}
    if pretrained:
        _load_trunk(model, Path(overlay.get("file") or onet_weights_path()))
    return model


from alface import dlib_resnet as _dlib_resnet  # noqa: E402,F401  (registers dlib_resnet)
