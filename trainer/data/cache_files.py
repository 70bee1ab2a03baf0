"""Entries of the on-disk decoded-image cache: one memory-mapped file per dataset, size and decoder.

An entry is ``<cache dir>/<digest>-<size>px-<key hash>.cache``: a one-page header (a magic
line, then JSON with the full key and the slot count), one "filled" flag byte per slot, then
the pixels from the next page boundary. The key holds everything that changes the pixels: the
data digest, the list of files, the image size, the resize, the OpenCV and albumentations
versions, the decode flags and ``FORMAT_VERSION``. A file whose header does not match its key,
or whose length does not match its header, is never read: it is rebuilt.

Files are created complete under a temporary name, then linked into place (first creator
wins) or, over a stale file, renamed; every process maps the same file, so an image decoded by
one trial or worker is read by all later ones. Eviction removes whole entries, least recently
opened first; a process that still maps a removed entry keeps reading it safely.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import mmap
import os
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2

from trainer.data import images
from trainer.data.transforms import Resize

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump whenever decoding, resizing or the layout changes the stored pixels
MAGIC = b"timm-studies image cache\n"
PAGE = 4096
SUFFIX = ".cache"
TEMP_SUFFIX = ".tmp"
ENV_DIR = "TIMM_STUDIES_CACHE"
STALE_TEMP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Layout:
    """Where the flags and pixels of ``capacity`` images lie in a cache buffer."""

    capacity: int
    image_bytes: int
    header: int  # bytes before the flags: 0 in anonymous memory, one page in a file

    @property
    def pixels_at(self) -> int:
        """Offset of the first image (page-aligned in a file)."""
        end = self.header + self.capacity
        return -(-end // PAGE) * PAGE if self.header else end

    @property
    def nbytes(self) -> int:
        """Total length of the buffer."""
        return self.pixels_at + self.capacity * self.image_bytes


@dataclass
class Entry:
    """An open, valid cache file mapped into this process."""

    path: Path
    layout: Layout
    buffer: mmap.mmap
    identity: tuple[int, int]  # (st_dev, st_ino): tells whether the file was replaced


def cache_dir() -> Path:
    """``$TIMM_STUDIES_CACHE``, else ``$XDG_CACHE_HOME/timm-studies/images`` (``~/.cache``)."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "timm-studies" / "images"


def decoder_settings() -> dict[str, object]:
    """Everything besides the file bytes and the size that decides the cached pixels."""
    return {
        "opencv": cv2.__version__,
        "albumentations": metadata.version("albumentations"),
        "full_flag": images.FULL_DECODE,
        "reduced_flags": [flag for _, flag in images.REDUCED_JPEG],
    }


def entry_key(digest: str, paths: tuple[Path, ...], resize: Resize) -> dict[str, object]:
    """The identity of a cache entry (JSON-safe: compared after a round trip through a file)."""
    names = "\n".join(str(path) for path in paths)
    listing = hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()  # any name
    return {
        "format": FORMAT_VERSION,
        "digest": digest,
        "images": len(paths),
        "paths_sha256": listing,
        "size": resize.size,
        "resize": repr(resize),
        "decoder": decoder_settings(),
    }


def entry_path(directory: Path, key: dict[str, object]) -> Path:
    """The file name of ``key``: readable prefix (digest, size), then a hash of the whole key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return directory / f"{str(key['digest'])[:12]}-{key['size']}px-{digest[:16]}{SUFFIX}"


def open_entry(path: Path, key: dict[str, object], layout: Layout, budget: int) -> Entry:
    """Map the valid entry at ``path`` holding at least ``layout.capacity`` slots, or make one.

    Older entries are removed, least recently used first, so that all fit in ``budget`` bytes.
    Raises ``OSError`` when the folder cannot hold it (read-only, full disk).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        entry = _open_valid(path, key)
        if entry is not None and entry.layout.capacity >= layout.capacity:
            _touch(path)
            return entry
        if entry is not None:
            entry.buffer.close()  # a smaller budget made it: rebuild at the new size
        make_room(path.parent, layout.nbytes, budget, keep=path)
        created = _create(path, key, layout, replace=entry is not None or path.exists())
        if created is not None:
            _touch(path)
            return created
    raise OSError(errno.EAGAIN, f"cache file {path} keeps changing under us")


def _touch(path: Path) -> None:
    # The modification time is the LRU clock (last opened). Set from time_ns explicitly: the
    # kernel stamps files from a coarse clock, which would misorder entries opened in a burst.
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def read_header(fd: int) -> tuple[dict[str, object], Layout] | None:
    """The key and layout recorded in an open cache file, None if it is not a complete one."""
    raw = os.pread(fd, PAGE, 0)
    if not raw.startswith(MAGIC):
        return None
    try:
        header = json.loads(raw[len(MAGIC) :].split(b"\0", 1)[0])
        layout = Layout(int(header["capacity"]), int(header["image_bytes"]), PAGE)
        key = header["key"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(key, dict) or layout.capacity < 1 or os.fstat(fd).st_size != layout.nbytes:
        return None
    return key, layout


def _open_valid(path: Path, key: dict[str, object]) -> Entry | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        found = read_header(fd)
        if found is None or found[0] != key:
            log.info("ignoring image cache file %s: stale or incomplete; rebuilding it", path)
            return None
        return _map(fd, path, found[1])
    finally:
        os.close(fd)


def _map(fd: int, path: Path, layout: Layout) -> Entry:
    status = os.fstat(fd)
    buffer = mmap.mmap(fd, layout.nbytes)
    return Entry(path, layout, buffer, (status.st_dev, status.st_ino))


def _create(path: Path, key: dict[str, object], layout: Layout, replace: bool) -> Entry | None:
    """A new entry, complete before it appears at ``path``; None if another process won."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _reserve(fd, layout.nbytes)
        header = {"key": key, "capacity": layout.capacity, "image_bytes": layout.image_bytes}
        os.pwrite(fd, MAGIC + json.dumps(header).encode() + b"\0", 0)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)  # fails if another process created it meanwhile
            except FileExistsError:
                return None
            finally:
                temp.unlink(missing_ok=True)
        log.debug("created image cache file %s (%d slots)", path, layout.capacity)
        return _map(fd, path, layout)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _reserve(fd: int, nbytes: int) -> None:
    # Writing through a mapping into a sparse file on a full disk kills the process (SIGBUS);
    # reserving the blocks up front turns that into an OSError here instead.
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, nbytes)


def make_room(directory: Path, needed: int, budget: int, keep: Path) -> None:
    """Remove whole entries, least recently opened first, until ``needed`` more bytes fit."""
    entries = []
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        if path != keep:
            entries.append((status.st_mtime_ns, status.st_size, path))
    total = needed + sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= budget:
            break
        path.unlink(missing_ok=True)
        total -= size
        log.info("removed image cache file %s to stay within data.cache_mb", path.name)
    now = time.time()
    for temp in directory.glob(f".*{TEMP_SUFFIX}"):
        try:
            if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:  # left by a killed process
                temp.unlink()
        except FileNotFoundError:
            continue
