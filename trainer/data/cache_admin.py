"""What ``trainer cache list`` and ``trainer cache clear`` see of the decoded-image cache.

The entries themselves (key, layout, creation, eviction) are ``trainer.data.cache_files``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainer.data.cache_files import SUFFIX, TEMP_SUFFIX, read_header


@dataclass(frozen=True)
class EntryInfo:
    """What ``trainer cache list`` shows of one cache file."""

    path: Path
    nbytes: int
    last_used: float
    digest: str = ""
    size: int = 0
    images: int = 0
    capacity: int = 0
    filled: int = 0

    @property
    def valid(self) -> bool:
        """Whether the file has a readable header (else it is ignored and rebuilt on use)."""
        return self.capacity > 0


def list_entries(directory: Path) -> list[EntryInfo]:
    """Every cache file in ``directory``, least recently used first."""
    found = []
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            found.append(_describe(path))
        except FileNotFoundError:
            continue
    return sorted(found, key=lambda info: info.last_used)


def _describe(path: Path) -> EntryInfo:
    fd = os.open(path, os.O_RDONLY)
    try:
        status = os.fstat(fd)
        plain = EntryInfo(path, status.st_size, status.st_mtime)
        header = read_header(fd)
        if header is None:
            return plain
        key, layout = header
        flags = os.pread(fd, layout.capacity, layout.header)
    finally:
        os.close(fd)
    return EntryInfo(
        path,
        plain.nbytes,
        plain.last_used,
        digest=str(key.get("digest", "")),
        size=int(str(key.get("size", 0))),
        images=int(str(key.get("images", 0))),
        capacity=layout.capacity,
        filled=sum(1 for flag in flags if flag),
    )


def clear_entries(directory: Path, prefixes: list[str]) -> tuple[int, int]:
    """Remove cache files whose name or data digest starts with a prefix (all without one).

    Returns (files removed, bytes freed). Temporary files of unfinished entries go too.
    """
    removed = freed = 0
    candidates = [*directory.glob(f"*{SUFFIX}"), *directory.glob(f".*{TEMP_SUFFIX}")]
    for path in candidates:
        name = path.name.lstrip(".")
        if prefixes and not any(_matches(name, prefix) for prefix in prefixes):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        freed += size
    return removed, freed


def _matches(name: str, prefix: str) -> bool:
    # File names carry the digest's first 12 characters; a longer digest prefix matches on those.
    is_digest = len(prefix) > 12 and all(char in "0123456789abcdef" for char in prefix)
    return name.startswith(prefix[:12] + "-" if is_digest else prefix)
