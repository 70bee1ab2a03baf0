"""Decode images with OpenCV as 8-bit RGB: the one decoder of the project.

The decoded, resized copies are kept by ``trainer.data.cache`` (``ImageCache``, ``CACHES``).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import cv2
import numpy as np

from trainer.errors import UserError

log = logging.getLogger(__name__)

# Parallelism is across images (DataLoader workers), not inside one. OpenCV's own thread pool
# also deadlocks in forked workers once the parent has used it, so it is never started.
cv2.setNumThreads(1)


class ImageReadError(UserError):
    """An image file that cannot be read or decoded; ``reason`` says why, without the path."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message

    @classmethod
    def of(cls, path: Path, reason: str) -> ImageReadError:
        """The error for ``path``, worded as one line."""
        return cls(f"cannot read image {path}: {reason}", reason)


JPEG_MAGIC = b"\xff\xd8\xff"
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})
REDUCED_JPEG = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def read_rgb(path: Path, at_least: int | None = None) -> np.ndarray:
    """Decode an image file to an ``H x W x 3`` uint8 RGB array, upright (see ``decode_rgb``)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError.of(path, "file not found (a broken link?)") from None
    except PermissionError:
        raise ImageReadError.of(path, "permission denied") from None
    except OSError as error:
        raise ImageReadError.of(path, str(error.strerror or error)) from None
    try:
        return decode_rgb(data, at_least)
    except ImageReadError as error:
        raise ImageReadError.of(path, error.reason) from None


def decode_rgb(data: bytes | np.ndarray, at_least: int | None = None) -> np.ndarray:
    """Decode the bytes of an image file to an ``H x W x 3`` uint8 RGB array.

    The one decoder of the project: training, validation, refit, predict and serving all call
    it. The EXIF orientation is always applied (OpenCV does so for every flag used here, but
    not for ``IMREAD_UNCHANGED``), so a phone photo is upright wherever it is read.
    Grayscale, palette, CMYK, RGBA / grayscale+alpha, 16-bit and float images are converted,
    not rejected. With ``at_least``, a large JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg
    scales while decoding) as long as both sides stay at least that long, so a 10000 x 10000
    photo never needs its full-size pixels in memory.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if not buffer.size:
        raise ImageReadError("empty file (0 bytes)")
    image = cv2.imdecode(buffer, _decode_flag(buffer, at_least))
    if image is None:
        raise ImageReadError("cannot decode (corrupt, truncated or not an image)")
    return to_rgb8(image)


# Colour (alpha dropped, as training always did) at the file's bit depth. Unlike
# IMREAD_UNCHANGED, this flag applies the EXIF orientation, like the IMREAD_REDUCED_* ones.
FULL_DECODE = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH


def _decode_flag(data: np.ndarray, at_least: int | None) -> int:
    if at_least is None or data[:3].tobytes() != JPEG_MAGIC:
        return FULL_DECODE
    shortest = _jpeg_shortest_side(data.data)
    scales = [flag for scale, flag in REDUCED_JPEG if shortest and shortest // scale >= at_least]
    return scales[0] if scales else FULL_DECODE


def _jpeg_shortest_side(raw: memoryview) -> int | None:
    """The shorter side from a JPEG's start-of-frame header, without decoding (None: not found)."""
    at = 2
    while at + 9 < len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        length = int.from_bytes(raw[at + 2 : at + 4], "big")
        if marker in SOF_MARKERS:
            height = int.from_bytes(raw[at + 5 : at + 7], "big")
            width = int.from_bytes(raw[at + 7 : at + 9], "big")
            return min(height, width) or None
        at += 2 + length
    return None


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert any OpenCV image (BGR/BGRA/gray, 8/16-bit or float) to uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * 255.0, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_png_base64(image: np.ndarray) -> str:
    """An RGB uint8 image as base64 PNG text (the serving input format)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return base64.b64encode(data.tobytes()).decode("ascii")
