"""Decode images with OpenCV as 8-bit RGB, and keep decoded, resized copies in shared memory.

The cache is a lazily filled block of anonymous shared memory (``mmap``): whichever process
first needs an image (the main process or a forked DataLoader worker) decodes and resizes it
once, and every later epoch, fold and trial in this process tree reads the pixels back. Only
the resize is cached; augmentation stays per sample.
"""

from __future__ import annotations

import base64
import logging
import mmap
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from trainer.errors import UserError
from trainer.transforms import Resize

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


class ImageCache:
    """Decoded, resized images of one dataset at one size, shared with forked workers.

    Holds at most ``capacity`` images (the first ones by index); the rest are decoded each
    time they are read. Shared between processes only when workers are forked after it is made.
    """

    def __init__(self, paths: tuple[Path, ...], resize: Resize, capacity: int) -> None:
        self.paths = paths
        self.resize = resize
        size = self.size = resize.size
        self.capacity = min(capacity, len(paths))
        self._image_bytes = size * size * 3
        # One block: a "filled" flag byte per slot, then the pixels.
        self._buffer = mmap.mmap(-1, max(1, self.capacity * (self._image_bytes + 1)))
        self._filled = np.frombuffer(self._buffer, dtype=np.uint8, count=self.capacity)
        self._pixels = np.frombuffer(
            self._buffer,
            dtype=np.uint8,
            count=self.capacity * self._image_bytes,
            offset=self.capacity,
        ).reshape(self.capacity, size, size, 3)

    @property
    def nbytes(self) -> int:
        """Bytes of memory the cache reserves."""
        return len(self._buffer)

    def filled(self) -> int:
        """How many images are cached so far."""
        return int(self._filled.sum())

    def get(self, index: int) -> np.ndarray:
        """The resized RGB image ``index``: from the cache, or decoded (and cached if room)."""
        if index < self.capacity and self._filled[index]:
            return self._pixels[index].copy()
        image = self.resize(read_rgb(self.paths[index], at_least=self.size))
        if index < self.capacity:
            self._pixels[index] = image
            self._filled[index] = 1  # written after the pixels: readers never see half an image
        return image


class CacheRegistry:
    """Caches kept for this process, one per (dataset digest, image size), within a budget.

    Trials in one process that use the same data at the same size share one cache; when a
    new size does not fit, the least recently used caches are dropped.
    """

    def __init__(self) -> None:
        self._caches: OrderedDict[tuple[str, int], ImageCache] = OrderedDict()

    def get(
        self, digest: str, paths: tuple[Path, ...], resize: Resize, budget_mb: int
    ) -> ImageCache:
        """A cache for these images at this size that fits in ``budget_mb`` megabytes."""
        size = resize.size
        key = (digest, size)
        if key in self._caches:
            self._caches.move_to_end(key)
            return self._caches[key]
        budget = budget_mb * 2**20
        capacity = budget // (size * size * 3 + 1)
        cache = ImageCache(paths, resize, capacity)
        while self._caches and sum(c.nbytes for c in self._caches.values()) + cache.nbytes > budget:
            evicted, _ = self._caches.popitem(last=False)
            log.debug("dropped image cache %s to fit the budget", evicted)
        if 0 < cache.capacity < len(paths):
            log.warning(
                "image cache holds %d of %d images at %d px within data.cache_mb=%d; "
                "raise it to cache all",
                cache.capacity,
                len(paths),
                size,
                budget_mb,
            )
        self._caches[key] = cache
        return cache


CACHES = CacheRegistry()


def encode_png_base64(image: np.ndarray) -> str:
    """An RGB uint8 image as base64 PNG text (the serving input format)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return base64.b64encode(data.tobytes()).decode("ascii")
