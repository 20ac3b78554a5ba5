"""Batch transforms on the device: uint8 crops to normalised (and augmented) float tensors.

One transform serves a whole batch at once (one ``affine_grid`` + ``grid_sample`` for every
image's random resized crop and flip), so augmentation runs on the GPU with the model instead
of per image in loader workers (benchmarks/train_speed.py compares it with torchvision's).
Normalisation is the backbone's data config (:func:`alface.backbones.backbone_spec`: timm's
mean/std unless overridden).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from alface.backbones import backbone_spec
from alface.config import AugmentConfig, Config
from alface.errors import AlfaceError

Batch = dict[str, torch.Tensor]


class TransformError(AlfaceError, ValueError):
    """A transform that cannot be built (normalisation of the wrong length)."""


class BatchTransform:
    """uint8 (B, 3, S, S) -> normalised float32, with per-sample augmentation when ``train``.

    Args:
        mean, std: per-channel normalisation of 0..1 pixels (the backbone's data config).
        augment: random resized crop keeping at least ``crop_scale`` of the area (aspect
            3/4..4/3), horizontal flip, brightness and contrast jitter; None: none.
        train: augment (only then).
        generator: the augmentation's random numbers (default: torch's global generator).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentConfig | None = None,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise TransformError(f"mean and std need 3 values (RGB), got {mean} and {std}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.aug = augment or AugmentConfig(
            hflip=False, crop_scale=1.0, brightness=0.0, contrast=0.0
        )
        self.train, self.generator = train, generator
        self._affine: dict[tuple[torch.device, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_config(
        cls, cfg: Config, train: bool, generator: torch.Generator | None = None
    ) -> BatchTransform:
        """The transform of ``cfg``: its backbone's resolved mean/std and ``data.augment``."""
        spec = backbone_spec(cfg.backbone, cfg.data.image_size)
        return cls(spec.mean, spec.std, cfg.data.augment, train, generator)

    def __call__(self, batch: Batch) -> Batch:
        """``batch`` with ``image`` (B, 3, S, S) normalised float32 (channels-last), uint8 or
        float 0..1 in; augmented first when ``train``."""
        x = batch["image"]
        raw = x.dtype == torch.uint8
        x = x.float()
        if self.train and len(x):
            x = self.augment(x.div_(255) if raw else x)
            raw = False
        scale, shift = self._scale_shift(x.device, raw)
        x = torch.addcmul(shift, x, scale)  # (x / 255 - mean) / std in one pass
        return {**batch, "image": x.contiguous(memory_format=torch.channels_last)}

    def _scale_shift(self, device: torch.device, raw: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if (device, raw) not in self._affine:
            scale = 1 / (self.std * (255 if raw else 1))
            self._affine[device, raw] = (scale.to(device), (-self.mean / self.std).to(device))
        return self._affine[device, raw]

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        if self.generator is None:
            u = torch.rand(n, device=device)
        else:
            u = torch.rand(n, generator=self.generator, device=self.generator.device).to(device)
        return low + (high - low) * u

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented copy of ``x`` (B, 3, S, S) float in [0, 1]."""
        a, b, dev = self.aug, len(x), x.device
        if a.crop_scale < 1 or a.hflip:
            area = self._uniform(b, min(a.crop_scale, 1.0), 1.0, dev)
            ratio = torch.ones(b, device=dev)
            if a.crop_scale < 1:
                ratio = torch.exp(self._uniform(b, math.log(3 / 4), math.log(4 / 3), dev))
            w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
            flip = torch.ones(b, device=dev)
            if a.hflip:
                flip = torch.where(self._uniform(b, 0, 1, dev) < 0.5, -1.0, 1.0)
            theta = torch.zeros(b, 2, 3, device=dev)
            theta[:, 0, 0], theta[:, 1, 1] = w * flip, h
            theta[:, 0, 2] = (1 - w) * self._uniform(b, -1, 1, dev)
            theta[:, 1, 2] = (1 - h) * self._uniform(b, -1, 1, dev)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if a.brightness or a.contrast:  # x * br, then contrast c around its mean: one pass
            br = 1 + self._uniform(b, -a.brightness, a.brightness, dev).view(b, 1, 1, 1)
            c = 1 + self._uniform(b, -a.contrast, a.contrast, dev).view(b, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True) if a.contrast else torch.zeros_like(br)
            x = torch.addcmul(mean * br * (1 - c), x, br * c).clamp_(0, 1)
        return x
