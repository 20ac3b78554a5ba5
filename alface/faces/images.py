"""Robust image loading: any file Pillow reads becomes an upright 8-bit RGB image, or one reason.

This module imports only Pillow and numpy: it is what the decoding worker processes run, and
they start in a fraction of a second when they only decode (on CPU they also detect; see
alface.faces.pipeline).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import struct
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alface.errors import AlfaceError

# Reasons a file is refused; the run's summary counts failures by these.
EMPTY, NOT_IMAGE, CORRUPT, TOO_LARGE, UNSUPPORTED, UNREADABLE = (
    "empty file", "not an image", "corrupt image", "too large", "unsupported image",
    "unreadable file",
)  # fmt: skip
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

log = logging.getLogger(__name__)


class ImageError(AlfaceError, ValueError):
    """An input file that cannot be used as an image; ``reason`` is one of the reasons above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


def load_image(path: str | Path, max_megapixels: float) -> Image.Image:
    """The image at ``path`` as upright (EXIF orientation applied) 8-bit RGB, fully decoded."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(EMPTY)
    except OSError as e:
        raise ImageError(UNREADABLE, e.strerror or str(e)) from e
    limit = int(max_megapixels * 1e6)
    saved = Image.MAX_IMAGE_PIXELS
    # Pillow's own bomb check follows ours: a warning above the limit, an error at twice it.
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > limit:
                raise ImageError(
                    TOO_LARGE, f"{w}x{h} = {w * h / 1e6:.0f} MP > {max_megapixels:g} MP"
                )
            img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(TOO_LARGE, f"> {max_megapixels:g} MP") from e
    except UnidentifiedImageError as e:
        raise ImageError(NOT_IMAGE) from e
    except _DECODE_ERRORS as e:
        raise ImageError(CORRUPT, str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return to_rgb(upright(img))


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (unchanged when the EXIF is unreadable)."""
    try:
        return ImageOps.exif_transpose(img)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from grayscale, palette, alpha, CMYK, 16-bit and float images."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT or img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        peak = a.max(initial=0.0)
        if img.mode in _SIXTEEN_BIT and peak > 255:
            a = a / 257.0  # 16-bit range onto 8 bits
        elif img.mode == "F" and peak <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(flat, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageError(UNSUPPORTED, f"color mode {img.mode}") from e


def detection_copy(img: Image.Image, max_side: int, multiple: int = 32) -> tuple[np.ndarray, float]:
    """A copy of ``img`` no longer than ``max_side``, zero-padded right and bottom to a
    multiple of ``multiple`` (so that images of similar size batch together), and its scale.

    Returns:
        (H', W', 3) uint8 array and the factor from source to copy pixels (<= 1).
    """
    w, h = img.size
    scale = min(1.0, max_side / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    a = np.asarray(img)
    ph = math.ceil(a.shape[0] / multiple) * multiple
    pw = math.ceil(a.shape[1] / multiple) * multiple
    if (ph, pw) != a.shape[:2]:
        a = np.pad(a, ((0, ph - a.shape[0]), (0, pw - a.shape[1]), (0, 0)))
    return a, scale


@dataclass(frozen=True)
class Decoded:
    """One decoded input image (or why it could not be)."""

    path: str
    image: np.ndarray | None = None  # (H, W, 3) uint8, upright, full resolution
    det: np.ndarray | None = None  # the detection copy, see detection_copy
    scale: float = 1.0
    reason: str | None = None
    error: str | None = None
    faces: Any = None  # set when a worker also ran detection: its faces (det pixels) or error text


def decode(path: str, max_megapixels: float, max_side: int) -> Decoded:
    """Load ``path`` and make its detection copy; a bad file gives a Decoded with its reason."""
    try:
        img = load_image(path, max_megapixels)
        det, scale = detection_copy(img, max_side)
        return Decoded(path, np.asarray(img), det, scale)
    except ImageError as e:
        return Decoded(path, reason=e.reason, error=str(e))
    except MemoryError:
        return Decoded(path, reason=TOO_LARGE, error=f"{TOO_LARGE} (out of memory)")


@contextmanager
def decoding(
    workers: int,
    max_megapixels: float,
    max_side: int,
    task: Callable[[str, float, int], Decoded] = decode,
    initializer: Callable[[], None] | None = None,
) -> Iterator[Callable[[str], Future]]:
    """``submit(path) -> Future[Decoded]`` running ``task`` (default :func:`decode`; it must
    pickle) in ``workers`` processes, each started with ``initializer``; :func:`decode` in this
    process when ``workers`` is 0."""
    if workers <= 0:

        def inline(path: str) -> Future:
            f: Future = Future()
            f.set_result(decode(path, max_megapixels, max_side))
            return f

        yield inline
        return
    # spawn: the workers inherit no torch thread pools (and import torch only to detect).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer) as pool:

        def submit(path: str) -> Future:
            try:
                future = pool.submit(task, path, max_megapixels, max_side)
            except BrokenProcessPool:
                future = Future()
                future.set_exception(BrokenProcessPool("decoding workers are gone"))
            return _Fallback(future, path, max_megapixels, max_side)

        try:
            yield submit
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class _Fallback(Future):
    """A worker's future that decodes in this process if the worker pool died (a worker
    killed for memory, or crashed in a decoder): the run goes on without workers."""

    def __init__(self, future: Future, path: str, max_megapixels: float, max_side: int) -> None:
        super().__init__()
        self.future, self.args = future, (path, max_megapixels, max_side)

    def result(self, timeout: float | None = None) -> Decoded:
        try:
            return self.future.result(timeout)
        except BrokenProcessPool:
            log.warning("decoding worker pool died; decoding %s in the main process", self.args[0])
            return decode(*self.args)
