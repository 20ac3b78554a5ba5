"""Contact sheets: the faces of a batch as thumbnails, grouped (by cluster) under headers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

Group = tuple[str, Sequence[tuple[Path, str]]]  # (header, [(crop path, caption), ...])

_BG, _INK, _HEAD_BG, _MISSING = (255, 255, 255), (20, 20, 20), (225, 230, 240), (200, 200, 200)


def contact_sheet(groups: Sequence[Group], thumb: int = 96, columns: int = 10) -> Image.Image:
    """An RGB sheet: per group a header band, then its faces ``thumb`` px wide, a caption under
    each, ``columns`` to a row. Unreadable crops show as grey squares."""
    if thumb < 16 or columns < 1:
        raise ValueError(f"thumb must be >= 16 px and columns >= 1, got {thumb} and {columns}")
    columns = max(1, min(columns, max((len(faces) for _, faces in groups), default=1)))
    font = ImageFont.load_default(size=max(10, thumb // 8))
    head_font = ImageFont.load_default(size=max(12, thumb // 6))
    pad, cap_h, head_h = 4, max(10, thumb // 8) + 6, max(12, thumb // 6) + 10
    cell_w, cell_h = thumb + pad, thumb + cap_h
    width = pad + columns * cell_w
    height = pad + sum(head_h + -(-len(faces) // columns) * cell_h + pad for _, faces in groups)
    sheet = Image.new("RGB", (width, max(height, head_h)), _BG)
    draw = ImageDraw.Draw(sheet)
    y = pad
    for header, faces in groups:
        draw.rectangle((0, y, width, y + head_h - 4), fill=_HEAD_BG)
        draw.text(
            (pad + 2, y + 3), _fit(header, head_font, width - 2 * pad), font=head_font, fill=_INK
        )
        y += head_h
        for i, (path, caption) in enumerate(faces):
            x0, y0 = pad + (i % columns) * cell_w, y + (i // columns) * cell_h
            sheet.paste(_thumbnail(path, thumb), (x0, y0))
            draw.text((x0, y0 + thumb + 2), _fit(caption, font, thumb), font=font, fill=_INK)
        y += -(-len(faces) // columns) * cell_h + pad
    return sheet


def _thumbnail(path: Path, size: int) -> Image.Image:
    """The crop as a ``size`` px square, or a grey square when it cannot be read."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            return ImageOps.fit(im, (size, size))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        log.warning("contact sheet: cannot read %s (%s)", path, e)
        return Image.new("RGB", (size, size), _MISSING)


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` px."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"
