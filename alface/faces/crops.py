"""Face crops: a square around each box with a margin, their content hash, atomic JPEG files.

The hash of a crop is the SHA-1 of its decoded pixels (the uint8 RGB array that is then
encoded), not of the JPEG bytes: it names the crop file and is the item's identity in the
store, so the same face cut the same way is the same item whatever the JPEG encoder does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from alface.fsutil import atomic_path

CROP_DIR = "crops"


def square_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """The square (left, top, right, bottom) around ``box`` (x1, y1, x2, y2): its side is the
    box's longer side times (1 + margin), centered on the box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    left = round((x1 + x2 - side) / 2)
    top = round((y1 + y2 - side) / 2)
    s = max(1, round(side))
    return left, top, left + s, top + s


def cut_crop(image: np.ndarray, box: Sequence[float], size: int, margin: float) -> np.ndarray:
    """The face in ``box`` of ``image`` (H, W, 3) as a (size, size, 3) uint8 array; parts of the
    square that fall outside the image are black."""
    left, top, right, bottom = square_box(box, margin)
    h, w = image.shape[:2]
    region = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(right, w), min(bottom, h)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
    crop = Image.fromarray(region).resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(crop)


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-1 (hex) of an image array's shape and bytes."""
    h = hashlib.sha1(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def crop_relpath(content_hash: str) -> str:
    """Where a crop lives, relative to WORKDIR: crops/<hash[:2]>/<hash>.jpg."""
    return f"{CROP_DIR}/{content_hash[:2]}/{content_hash}.jpg"


def write_jpeg(pixels: np.ndarray, path: Path, quality: int) -> None:
    """Write ``pixels`` as a JPEG at ``path`` through a temporary file and a rename; an
    existing file is kept (crops are named by their content)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, "JPEG", quality=quality)
