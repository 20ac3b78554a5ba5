"""Near-copies of a face crop: small shift, scale, brightness, blur and JPEG compression.

What consecutive video frames or re-encoded copies of one photo do to a crop. Used to build a
redundant pool (K near-copies of each labeled face) for the redundancy benchmark, and in tests
of near-duplicate grouping. Pure: the same image and ``rng`` state give the same copies.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from alface.errors import AlfaceError


class VariantError(AlfaceError, ValueError):
    """A variant that cannot be made (not an image array, bad strength)."""


@dataclass(frozen=True)
class VariantStrength:
    """How far a near-copy may drift from its original; each draw is uniform in the range."""

    shift: float = 0.05  # translation, up to this fraction of the side, in x and y
    scale: float = 0.08  # zoom factor in [1 - scale, 1 + scale]
    brightness: float = 0.15  # pixel values times a factor in [1 - b, 1 + b]
    blur: float = 1.0  # Gaussian blur radius in px, up to this (at a 160 px crop)
    jpeg: tuple[int, int] = (50, 95)  # JPEG quality range; re-encoded once


def check_strength(s: VariantStrength) -> None:
    """Raise VariantError naming the first field outside its allowed range."""
    for key, value, ok, allowed in (
        ("shift", s.shift, 0 <= s.shift < 0.5, "[0, 0.5)"),
        ("scale", s.scale, 0 <= s.scale < 0.5, "[0, 0.5)"),
        ("brightness", s.brightness, 0 <= s.brightness < 1, "[0, 1)"),
        ("blur", s.blur, s.blur >= 0, ">= 0"),
        ("jpeg", s.jpeg, 1 <= s.jpeg[0] <= s.jpeg[1] <= 100, "1 <= low <= high <= 100"),
    ):
        if not ok:
            raise VariantError(f"variant {key} = {value!r} is not allowed; allowed: {allowed}")


def near_copy(
    image: np.ndarray, rng: np.random.Generator, strength: VariantStrength = VariantStrength()
) -> np.ndarray:
    """One near-copy of ``image`` (H, W, 3) uint8: the same shape and dtype.

    Shift and scale are one affine warp about the centre (edges replicated by clamping the
    sampling grid to the image), then brightness, blur (radius scaled to the image side),
    and a JPEG round trip.
    """
    image = _rgb_uint8(image)
    h, w = image.shape[:2]
    dx, dy = rng.uniform(-strength.shift, strength.shift, 2) * (w, h)
    zoom = rng.uniform(1 - strength.scale, 1 + strength.scale)
    gain = rng.uniform(1 - strength.brightness, 1 + strength.brightness)
    radius = rng.uniform(0, strength.blur) * max(h, w) / 160
    quality = int(rng.integers(strength.jpeg[0], strength.jpeg[1] + 1))
    # Output pixel (x, y) samples the source at centre + (x - centre - shift) / zoom.
    cx, cy = (w - 1) / 2, (h - 1) / 2
    coeffs = (1 / zoom, 0, cx - (cx + dx) / zoom, 0, 1 / zoom, cy - (cy + dy) / zoom)
    padded = np.pad(image, ((h, h), (w, w), (0, 0)), mode="edge")  # edges replicated
    shifted = (coeffs[0], 0, coeffs[2] + w, 0, coeffs[4], coeffs[5] + h)
    warped = Image.fromarray(padded).transform(
        (w, h), Image.Transform.AFFINE, shifted, resample=Image.Resampling.BILINEAR
    )
    lit = np.clip(np.asarray(warped, dtype=np.float32) * gain, 0, 255).round().astype(np.uint8)
    out = Image.fromarray(lit)
    if radius > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


def near_copies(
    image: np.ndarray,
    k: int,
    rng: np.random.Generator,
    strength: VariantStrength = VariantStrength(),
) -> list[np.ndarray]:
    """``k`` near-copies of ``image`` (H, W, 3) uint8, each drawn independently with ``rng``."""
    if k < 0:
        raise VariantError(f"number of near-copies must be >= 0, got {k}")
    check_strength(strength)
    return [near_copy(image, rng, strength) for _ in range(k)]


def redundant_pool(
    paths: Sequence[str | Path],
    k: int,
    seed: int = 0,
    strength: VariantStrength = VariantStrength(),
) -> Iterator[tuple[Path, int, np.ndarray]]:
    """For each image file in ``paths`` (a labeled folder's crops), ``k`` near-copies:
    yields (path, j, (H, W, 3) uint8) for j = 0 .. k-1, file by file, lazily.

    The copies of file i depend only on (``seed``, i), so any subset or order of files
    gives the same copies of each. The data of the redundancy benchmark: a pool where each
    labeled face appears as K near-copies (K = 10-30 "frames").
    """
    from PIL import ImageOps

    check_strength(strength)
    for i, path in enumerate(paths):
        rng = np.random.default_rng([seed, i])
        with Image.open(path) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        for j, copy in enumerate(near_copies(image, k, rng, strength)):
            yield Path(path), j, copy


def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as (H, W, 3) uint8 RGB; grayscale (H, W) is repeated over three channels."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise VariantError(f"image must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 2:
        raise VariantError(f"image must be (H, W, 3) or (H, W) with sides >= 2, got {a.shape}")
    return a
