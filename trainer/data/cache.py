"""Decoded, resized images kept once for every fold, trial and worker process of a study.

Each (data, image size, decoder) has one memory-mapped file in the cache folder (see
``trainer.data.cache_files``): whichever process first needs an image decodes and resizes it and
writes it there; every later epoch, fold, trial and worker process, forked or started on its
own, reads the pixels back through the page cache. Only the resize is cached; augmentation
stays per sample. The files are bounded by ``data.cache_mb``, so a dataset larger than memory
is cached on disk; if the folder cannot be used, images are cached in this process's memory.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from trainer.data import cache_files, images
from trainer.data.cache_files import PAGE, Entry, Layout
from trainer.data.transforms import Resize

log = logging.getLogger(__name__)

MEMORY_FALLBACK_MB = 2048  # at most this much anonymous memory when the folder is unusable


class ImageCache:
    """Decoded, resized images of one dataset at one size: in a cache file or in memory.

    Holds at most ``capacity`` images (the first ones by index); the rest are decoded each
    time they are read. Without ``entry`` the images live in anonymous shared memory, shared
    only with processes forked after the cache is made.
    """

    def __init__(
        self,
        paths: tuple[Path, ...],
        resize: Resize,
        capacity: int,
        entry: Entry | None = None,
    ) -> None:
        self.paths = paths
        self.resize = resize
        size = self.size = resize.size
        self.entry = entry
        if entry is None:
            layout = Layout(min(capacity, len(paths)), size * size * 3, header=0)
            self._buffer = mmap.mmap(-1, max(1, layout.nbytes))
        else:
            layout, self._buffer = entry.layout, entry.buffer
        self.capacity = min(layout.capacity, len(paths))
        self._filled = np.frombuffer(
            self._buffer, dtype=np.uint8, count=self.capacity, offset=layout.header
        )
        self._pixels = np.frombuffer(
            self._buffer,
            dtype=np.uint8,
            count=self.capacity * layout.image_bytes,
            offset=layout.pixels_at,
        ).reshape(self.capacity, size, size, 3)

    @property
    def nbytes(self) -> int:
        """Bytes the cache maps (of a file, or of memory)."""
        return len(self._buffer)

    def filled(self) -> int:
        """How many images are cached so far."""
        return int(self._filled.sum())

    def is_current(self) -> bool:
        """False once this cache's file was removed or replaced (evicted, cleared, rebuilt)."""
        if self.entry is None:
            return True
        try:
            status = os.stat(self.entry.path)
        except OSError:
            return False
        return (status.st_dev, status.st_ino) == self.entry.identity

    def get(self, index: int) -> np.ndarray:
        """The resized RGB image ``index``: from the cache, or decoded (and cached if room)."""
        if index < self.capacity and self._filled[index]:
            return self._pixels[index].copy()
        image = self.resize(images.read_rgb(self.paths[index], at_least=self.size))
        if index < self.capacity:
            self._pixels[index] = image
            self._filled[index] = 1  # written after the pixels: readers never see half an image
        return image


class CacheRegistry:
    """The caches this process has open, one per (dataset digest, image size).

    Trials in one process that use the same data at the same size share one cache; a cache
    whose file was evicted or cleared by another process is reopened, and mappings beyond the
    budget are dropped, least recently used first.
    """

    def __init__(self) -> None:
        self._caches: OrderedDict[tuple[str, int], ImageCache] = OrderedDict()

    def get(
        self, digest: str, paths: tuple[Path, ...], resize: Resize, budget_mb: int
    ) -> ImageCache:
        """A cache for these images at this size within ``budget_mb`` megabytes of disk."""
        key = (digest, resize.size)
        for stale in [k for k, cache in self._caches.items() if not cache.is_current()]:
            del self._caches[stale]
        known = self._caches.get(key)
        if known is not None and known.paths == paths:
            self._caches.move_to_end(key)
            return known
        budget = budget_mb * 2**20
        cache = open_cache(digest, paths, resize, budget)
        while self._caches and sum(c.nbytes for c in self._caches.values()) + cache.nbytes > budget:
            evicted, _ = self._caches.popitem(last=False)
            log.debug("closed image cache %s to fit the budget", evicted)
        if 0 < cache.capacity < len(paths):
            log.warning(
                "image cache holds %d of %d images at %d px within data.cache_mb=%d; "
                "raise it to cache all",
                cache.capacity,
                len(paths),
                resize.size,
                budget_mb,
            )
        self._caches[key] = cache
        return cache


def open_cache(digest: str, paths: tuple[Path, ...], resize: Resize, budget: int) -> ImageCache:
    """The shared cache file of these images, or memory if the cache folder is unusable."""
    image_bytes = resize.size**2 * 3
    capacity = min(len(paths), max(0, budget - 2 * PAGE) // (image_bytes + 1))
    if capacity < 1:
        return ImageCache(paths, resize, 0)
    key = cache_files.entry_key(digest, paths, resize)
    path = cache_files.entry_path(cache_files.cache_dir(), key)
    try:
        entry = cache_files.open_entry(path, key, Layout(capacity, image_bytes, PAGE), budget)
    except (OSError, ValueError) as error:
        log.warning(
            "cannot use the image cache folder %s (%s); caching in this process's memory",
            path.parent,
            error,
        )
        memory = min(budget, MEMORY_FALLBACK_MB * 2**20) // (image_bytes + 1)
        return ImageCache(paths, resize, memory)
    return ImageCache(paths, resize, capacity, entry)


CACHES = CacheRegistry()
