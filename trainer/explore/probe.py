"""One look at each image file: its header facts, its content hash and its perceptual hash.

Headers are read by Pillow without decoding the pixels (format, colour mode, bands, size, EXIF
orientation); PNG bit depth comes from its IHDR chunk. Pixels come from the project's decoder
(``trainer.data.images.read_rgb``) with ``at_least=8``: the same call, and so the same verdict,
as the decode check before training, and libjpeg decodes a large JPEG at 1/8 scale, which is
plenty for a 64-bit perceptual hash (``imagehash.phash`` on a 32 x 32 grey image). The files
are spread over a process pool, one per core.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.data.images import JPEG_MAGIC, ImageReadError, decode_rgb, read_rgb

log = logging.getLogger(__name__)

CHECK_SIDE = 8  # the decode check's at_least (trainer.data.scan decodes with the same value)
HASH_SIDE = 32  # phash resizes to 32 x 32: decode at least that much when the file allows
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORIENTATION_TAG = 0x0112
SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the picture 90°
HEADER_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError, EOFError)
BITS_OF_MODE = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}


@dataclass(frozen=True)
class Probe:
    """What one file is. ``error`` is the decode check's reason ("" when the image is usable);
    ``phash`` is 0 for unusable images; sizes are upright (after the EXIF orientation)."""

    nbytes: int
    sha256: str
    phash: str  # 16 hex digits
    file_format: str
    mode: str
    channels: int
    bit_depth: int
    width: int
    height: int
    orientation: int
    error: str


def probe_file(path: Path) -> Probe:
    """Look at one file (never raises for a bad image: its ``error`` says why)."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    header = _header(data)
    try:
        pixels = read_rgb(path, at_least=CHECK_SIDE)
    except ImageReadError as error:
        return Probe(len(data), _sha256(data), "0" * 16, *header, error=error.reason)
    if min(pixels.shape[:2]) < HASH_SIDE and data[:3] == JPEG_MAGIC:
        pixels = decode_rgb(data, at_least=HASH_SIDE)  # a small JPEG: less reduction
    return Probe(len(data), _sha256(data), perceptual_hash(pixels), *header, error="")


def perceptual_hash(pixels: np.ndarray) -> str:
    """The 64-bit DCT hash (``imagehash.phash``) of an RGB image, as 16 hex digits."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return str(imagehash.phash(Image.fromarray(grey)))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _header(data: bytes) -> tuple[str, str, int, int, int, int, int]:
    """format, mode, channels, bit depth, upright width and height, EXIF orientation."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            file_format, mode = image.format or "unknown", image.mode
            width, height = image.size
            channels = len(image.getbands())
            orientation = _orientation(image)
    except HEADER_ERRORS:
        return ("unknown", "unknown", 0, 0, 0, 0, 0)
    if orientation in SWAPPED_ORIENTATIONS:
        width, height = height, width
    return file_format, mode, channels, _bit_depth(data, mode), width, height, orientation


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent, or when the file ends before it)."""
    try:
        return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
    except HEADER_ERRORS:
        return 1


def _bit_depth(data: bytes, mode: str) -> int:
    """Bits per channel: a PNG's IHDR says it; otherwise Pillow's mode does."""
    if data[:8] == PNG_MAGIC and len(data) > 24:
        return data[24]
    return BITS_OF_MODE.get(mode, 8)


def probe_all(paths: tuple[Path, ...], workers: int) -> list[Probe]:
    """``probe_file`` of every path, in order, over ``workers`` processes."""
    if workers <= 1 or len(paths) < 64:
        return [probe_file(path) for path in paths]
    chunk = max(16, min(256, len(paths) // (workers * 8)))
    with multiprocessing.get_context().Pool(workers, initializer=_worker_signals) as pool:
        probes = pool.map(probe_file, paths, chunksize=chunk)
        pool.close()
        pool.join()
    return probes


def _worker_signals() -> None:
    """Workers leave Ctrl-C to the parent and end quietly when it stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
