"""A cheap appearance embedding of face crops: MTCNN O-Net's conv trunk, for linking tracks.

Preprocess already runs MTCNN; its O-Net weights ship inside facenet-pytorch, so these
features cost no download and ~1 ms a face on a CPU core (96 px input, 1,152-d). They are
face-trained (face / not face, box, landmarks), not identity-trained: two frames of one
person are close (cosine > 0.95 for small shifts, blur, JPEG), distinct faces have median
cosine 0.84, so in tracking they rank competing links rather than veto them
(``tracks.min_similarity`` 0.5 refuses only clearly different faces).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from alface.errors import AlfaceError

SIZE = 96  # input side: the size the O-Net thresholds (tracks, duplicates) were measured at


class AppearanceError(AlfaceError, ValueError):
    """Crops that cannot be embedded."""


class FaceEmbedder:
    """O-Net trunk features (N, 1152) float32 of face crops, on ``device``."""

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 256) -> None:
        import timm

        import alface.backbones  # noqa: F401  (registers mtcnn_onet)

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = timm.create_model("mtcnn_onet", pretrained=True, num_classes=0)
        self.model.eval().to(self.device)
        cfg = self.model.pretrained_cfg
        self._mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1) * 255

    @torch.no_grad()
    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Features (N, 1152) float32 of ``crops``, each (H, W, 3) uint8 RGB (any size)."""
        if not len(crops):
            return np.zeros((0, self.model.num_features), np.float32)
        out = []
        for start in range(0, len(crops), self.batch_size):
            part = [_resized(c) for c in crops[start : start + self.batch_size]]
            x = torch.from_numpy(np.stack(part)).to(self.device).permute(0, 3, 1, 2).float()
            out.append(self.model((x - self._mean) / self._std).float().cpu().numpy())
        return np.concatenate(out)


def _resized(crop: np.ndarray) -> np.ndarray:
    """``crop`` as (SIZE, SIZE, 3) uint8."""
    a = np.asarray(crop)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise AppearanceError(f"a crop must be (H, W, 3) uint8, got {a.dtype} {a.shape}")
    if a.shape[:2] == (SIZE, SIZE):
        return a
    return np.asarray(Image.fromarray(a).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
