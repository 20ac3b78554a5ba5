"""Face-free backgrounds for synthetic programmes: procedural ones and scikit-image samples.

Procedural: a two-colour gradient, smooth colour blobs, soft stripes, colour tiles. Samples:
scikit-image's bundled images that show no face (no astronaut, cameraman or cat), grey ones
tinted between two colours. Each is drawn 8 % larger than the frame, for a slow pan.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

from alface.errors import AlfaceError

PROCEDURAL_BACKGROUNDS = ("gradient", "blobs", "stripes", "tiles")
SAMPLE_BACKGROUNDS = ("coffee", "rocket", "coins", "brick", "grass", "gravel", "colorwheel",
                      "hubble_deep_field", "immunohistochemistry", "retina", "moon", "clock")  # fmt: skip
BACKGROUNDS = PROCEDURAL_BACKGROUNDS + SAMPLE_BACKGROUNDS


class BackgroundError(AlfaceError, ValueError):
    """An unknown background kind."""


def background(kind: str, seed: int, w: int, h: int) -> np.ndarray:
    """A face-free background (H', W', 3) uint8, 8 % larger than (h, w) to pan across."""
    bw, bh = math.ceil(w * 1.08), math.ceil(h * 1.08)
    rng = np.random.default_rng(seed)
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = (xx * np.cos(angle) + yy * np.sin(angle)) / (bw + bh)
    if kind == "gradient":
        t = (along - along.min()) / np.ptp(along)
    elif kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * along * (bw + bh) / rng.uniform(30, 160))
    elif kind in ("blobs", "tiles"):
        cells = rng.uniform(0, 255, size=(rng.integers(3, 8), rng.integers(4, 12), 3))
        resample = Image.Resampling.BICUBIC if kind == "blobs" else Image.Resampling.NEAREST
        img = Image.fromarray(cells.astype(np.uint8)).resize((bw, bh), resample)
        return np.asarray(img, dtype=np.uint8).copy()
    elif kind in SAMPLE_BACKGROUNDS:
        return _sample_background(kind, c0, c1, bw, bh, rng)
    else:
        raise BackgroundError(
            f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}"
        )
    img = c0 * (1 - t[..., None]) + c1 * t[..., None] + rng.normal(0, 4, size=(bh, bw, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def _sample_background(
    kind: str, c0: np.ndarray, c1: np.ndarray, bw: int, bh: int, rng: np.random.Generator
) -> np.ndarray:
    """scikit-image's sample ``kind`` (no face in any of them) covering (bh, bw); grey ones
    tinted between two colours, flipped at random."""
    from skimage import data

    a = np.asarray(getattr(data, kind)())
    if a.ndim == 2:
        g = (a.astype(np.float32) / max(float(a.max()), 1.0))[..., None]
        a = (c0 * (1 - g) + c1 * g).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(a[..., :3]))
    img = ImageOps.fit(img, (bw, bh), Image.Resampling.BILINEAR)
    out = np.asarray(img)
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)
