"""Pictures of images as PNG sheets: captioned thumbnail grids and galleries of pairs.

Explore draws a grid per class and galleries of duplicate pairs; ``trainer.galleries`` draws
its pictures of predictions (misclassified images, likely label errors) with ``caption_grid``.

Thumbnails come from the project's decoder (``read_rgb``), so they are upright whatever the
EXIF orientation, and a large JPEG is decoded at reduced scale. A sheet is composed in pixels
(each thumbnail fitted into a ``CELL`` square, small images enlarged without smoothing), its
text drawn by Pillow in matplotlib's DejaVu Sans; the thumbnails' pixels are kept exactly, and
``cell_origin`` says where each one lies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trainer.data.images import ImageReadError, read_rgb

CELL = 96  # thumbnail square, pixels
PAD = 8
HEADER = 30  # title band
CAPTION = 14  # one caption line under a grid cell
CELL_CHARS = 17  # characters of a caption that fit under a cell
COLUMNS = 8
TEXT_WIDTH = 520  # the description beside each pair
DPI = 100
FONT = 7.5  # points: about 10 px at DPI
TITLE = 9.0  # points, a sheet's title
CHARS = 78  # characters that fit in TEXT_WIDTH
BACKGROUND = 255
FONT_FILE = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@dataclass(frozen=True)
class PairRow:
    """One row of a pair gallery: the two pictures and lines describing them."""

    first: np.ndarray | None
    second: np.ndarray | None
    lines: tuple[str, ...]


def thumbnail(path: Path, side: int = CELL) -> np.ndarray | None:
    """The upright RGB image fitted within ``side`` x ``side`` (None when unreadable)."""
    try:
        image = read_rgb(path, at_least=side)
    except ImageReadError:
        return None
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    smooth = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=smooth)


def cell_origin(
    index: int, columns: int = COLUMNS, row_height: int = CELL + CAPTION
) -> tuple[int, int]:
    """(x, y) of the top-left corner of cell ``index`` of a sheet."""
    row, column = divmod(index, columns)
    return PAD + column * (CELL + PAD), HEADER + row * (row_height + PAD)


def fitted_origin(image: np.ndarray) -> tuple[int, int]:
    """(x, y) offset of a thumbnail inside its cell (centred)."""
    return (CELL - image.shape[1]) // 2, (CELL - image.shape[0]) // 2


def class_grid(title: str, thumbs: list[tuple[np.ndarray | None, str]], path: Path) -> Path:
    """A grid of (thumbnail, caption) cells under ``title``."""
    return caption_grid(title, [(image, (caption,)) for image, caption in thumbs], path)


def caption_grid(
    title: str, cells: Sequence[tuple[np.ndarray | None, Sequence[str]]], path: Path
) -> Path:
    """A grid of thumbnails under ``title``, each with the same number of caption lines below
    it (the first cell's count; a line is cut in the middle to fit the cell)."""
    lines = max(1, len(cells[0][1])) if cells else 1
    row_height = CELL + CAPTION * lines
    columns = max(1, min(COLUMNS, len(cells)))
    rows = max(1, -(-len(cells) // columns))
    width = max(PAD + columns * (CELL + PAD), 2 * PAD + _text_width(title, TITLE))
    canvas = _canvas(width, HEADER + rows * (row_height + PAD))
    texts = [(PAD, 8, title, TITLE)]
    for index, (image, captions) in enumerate(cells):
        x, y = cell_origin(index, columns, row_height)
        _paste(canvas, image, x, y)
        for line, caption in enumerate(captions[:lines]):
            texts.append((x, y + CELL + 2 + CAPTION * line, shorten(caption, CELL_CHARS), 6.5))
    return _render(canvas, texts, path)


def pair_gallery(title: str, rows: list[PairRow], path: Path) -> Path:
    """Pairs side by side, one per row, each described on its right."""
    row_height = CELL
    width = PAD + 2 * (CELL + PAD) + TEXT_WIDTH
    canvas = _canvas(width, HEADER + max(1, len(rows)) * (row_height + PAD))
    texts = [(PAD, 8, title, 9.0)]
    for index, row in enumerate(rows):
        x, y = cell_origin(2 * index, 2, row_height)
        _paste(canvas, row.first, x, y)
        _paste(canvas, row.second, x + CELL + PAD, y)
        for line, text in enumerate(row.lines):
            texts.append((x + 2 * (CELL + PAD), y + 4 + 14 * line, shorten(text, CHARS), FONT))
    return _render(canvas, texts, path)


def shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle to ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    return f"{text[: keep // 2]}…{text[len(text) - (keep - keep // 2) :]}"


def file_stem(name: str, index: int) -> str:
    """A file name for a class: its index and its name's safe characters."""
    return f"{index:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60]}"


def _canvas(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def _paste(canvas: np.ndarray, image: np.ndarray | None, x: int, y: int) -> None:
    if image is None:  # unreadable: a grey cell with a cross
        canvas[y : y + CELL, x : x + CELL] = 200
        cv2.line(canvas, (x, y), (x + CELL - 1, y + CELL - 1), (120, 120, 120), 1)
        cv2.line(canvas, (x + CELL - 1, y), (x, y + CELL - 1), (120, 120, 120), 1)
        return
    dx, dy = fitted_origin(image)
    canvas[y + dy : y + dy + image.shape[0], x + dx : x + dx + image.shape[1]] = image


FAST_PNG = 1  # zlib level: half the encoding CPU of the default 6 for a ~20 % larger file; fits
# draw their galleries while training, which that CPU is taken from


def _render(canvas: np.ndarray, texts: list[tuple[int, int, str, float]], path: Path) -> Path:
    """Draw the texts (sizes in points at ``DPI``) on the canvas and write it as PNG."""
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for x, y, text, size in texts:
        draw.text((x, y), text, fill=(0, 0, 0), font=_font(round(size * DPI / 72)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG", compress_level=FAST_PNG)
    return path


def _text_width(text: str, size: float) -> int:
    """Pixels ``text`` takes at ``size`` points."""
    return round(_font(round(size * DPI / 72)).getlength(text))


@functools.cache
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at ``pixels``; Pillow's own font without it."""
    try:
        return ImageFont.truetype(str(FONT_FILE), pixels)
    except OSError:
        return ImageFont.load_default(pixels)
