"""The pictures of the labeling page: a face crop, and the source frame with the face's box.

Pure functions from files to JPEG bytes (no store, no web): the app calls them off its event
loop. Source frames are cached (a few MB), since the page shows each one at least twice.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from alface.errors import AlfaceError
from alface.faces.images import ImageError, load_image
from alface.faces.video import VideoError, frame_rate, is_video, read_frame

FRAME_SIDE = 960  # the source frame is shown at most this wide or high
BOX_COLOR = (255, 196, 0)


class PictureError(AlfaceError, ValueError):
    """A source that cannot be shown (missing, unreadable, not an image or video)."""


def crop_jpeg(path: Path, max_side: int | None = None) -> bytes:
    """The crop at ``path`` as JPEG bytes: a JPEG file as it is when it carries no metadata
    and is at most ``max_side`` px; else re-encoded upright, shrunk to ``max_side``, without
    metadata (a registered crop may be a full-size photo with its EXIF location)."""
    try:
        with Image.open(path) as img:
            meta = {"exif", "icc_profile", "comment", "xmp", "photoshop"} & set(img.info)
            small = max_side is None or max(img.size) <= max_side
            if img.format == "JPEG" and small and not meta and not img.getexif():
                return path.read_bytes()
            img = ImageOps.exif_transpose(img).convert("RGB")
            if not small:
                img.thumbnail((max_side, max_side), Image.LANCZOS)
            return _jpeg(img)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PictureError(f"crop not readable: {e}") from e


@lru_cache(maxsize=32)
def frame_jpeg(
    source: str, frame: int | None, box: Sequence[float] | None, max_megapixels: float = 50.0
) -> bytes:
    """The source image (or video ``frame``) with ``box`` (x1, y1, x2, y2 in source pixels)
    drawn, shrunk to at most :data:`FRAME_SIDE`, as JPEG bytes."""
    path = Path(source)
    if not path.is_file():
        raise PictureError(f"the source file is gone: {source}")
    try:
        if frame is not None or is_video(path):
            img = Image.fromarray(read_frame(path, frame or 0))
        else:
            img = load_image(path, max_megapixels)
    except (ImageError, VideoError) as e:
        raise PictureError(f"the source cannot be read: {e}") from e
    scale = min(1.0, FRAME_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    if box is not None:
        x1, y1, x2, y2 = (v * scale for v in box)
        width = max(2, round(max(img.size) / 240))
        ImageDraw.Draw(img).rectangle((x1, y1, x2, y2), outline=BOX_COLOR, width=width)
    return _jpeg(img)


@lru_cache(maxsize=256)
def video_rate(source: str) -> float | None:
    """Frames per second of a video source (None when unknown or not a video)."""
    return frame_rate(source) if is_video(source) else None


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
