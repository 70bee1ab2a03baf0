"""Find the images of a dataset: a folder of class subfolders, or a CSV of ``path,label``."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from trainer.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2"}
)


@dataclass(frozen=True)
class Samples:
    """The labelled images of a dataset, in a deterministic order."""

    root: Path  # the folder (or the CSV's folder) that relative paths start from
    paths: tuple[Path, ...]  # absolute image paths, sorted by (class, relative path)
    labels: np.ndarray  # int64 class index per image
    class_names: tuple[str, ...]  # sorted class names; the index is the label

    def __len__(self) -> int:
        return len(self.paths)

    def relative(self, index: int) -> str:
        """The image's path relative to the dataset root (POSIX form)."""
        return self.relative_paths[index]

    @cached_property
    def relative_paths(self) -> tuple[str, ...]:
        """Every image's path relative to the dataset root (POSIX form), in order.

        Computed once: splits, predictions and the tracked dataset each list every image, and
        ``Path.relative_to`` per image cost ~0.04 s per 2,000 images each time."""
        prefix = self.root.as_posix().rstrip("/") + "/"
        return tuple(
            text[len(prefix) :]
            if (text := path.as_posix()).startswith(prefix)
            else path.relative_to(self.root).as_posix()
            for path in self.paths
        )

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return dict(zip(self.class_names, counts.tolist(), strict=True))


def printable(name: str) -> str:
    """A file name as text for logs, tags and tables: bytes that are not UTF-8 become escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def find_samples(source: Path) -> Samples:
    """Discover a dataset from a class-folder tree or a ``path,label`` CSV."""
    if not source.exists():
        raise UserError(f"dataset not found: {source} (set data.root to a folder or a CSV file)")
    pairs = _pairs_from_csv(source) if source.is_file() else _pairs_from_folders(source)
    root = source.parent if source.is_file() else source
    if not pairs:
        raise UserError(
            f"no images found in {source} (expected class subfolders holding "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} files)"
        )
    class_names = tuple(sorted({label for _, label in pairs}))
    if len(class_names) < 2:
        raise UserError(f"{source}: found only the class {class_names[0]!r}; need at least two")
    index = {name: i for i, name in enumerate(class_names)}
    pairs.sort(key=lambda pair: (index[pair[1]], pair[0].as_posix()))
    return Samples(
        root=root,
        paths=tuple(path for path, _ in pairs),
        labels=np.array([index[label] for _, label in pairs], dtype=np.int64),
        class_names=class_names,
    )


def _pairs_from_folders(root: Path) -> list[tuple[Path, str]]:
    pairs: list[tuple[Path, str]] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        images = image_files(class_dir)
        if not images:
            log.warning("class folder %s holds no images; it is ignored", class_dir)
        pairs.extend((path, class_dir.name) for path in images)
    return pairs


def image_files(folder: Path) -> list[Path]:
    """The image files (by extension) anywhere under ``folder``, in no particular order.
    ``os.walk`` tells files from folders by the directory listing, where ``rglob`` and
    ``is_dir`` stat every file: a study scans its data once per trial."""
    files: list[Path] = []
    for directory, _, names in os.walk(folder):
        base = Path(directory)
        files += [base / name for name in names if _is_image_name(name)]
    return files


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _pairs_from_csv(csv_path: Path) -> list[tuple[Path, str]]:
    root = csv_path.parent.resolve()
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise UserError(
            f"{csv_path}: not UTF-8 text (byte {error.object[error.start]:#x} at offset "
            f"{error.start}); save the CSV as UTF-8"
        ) from None
    if missing:
        raise UserError(
            f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; "
            "the CSV needs a header with path,label"
        )
    pairs = []
    for line, row in enumerate(rows, start=2):
        label = (row["label"] or "").strip()
        if not label:
            raise UserError(f"{csv_path}:{line}: empty label for {row['path']!r}")
        path = (root / row["path"].strip()).resolve()
        if not path.is_relative_to(root):
            raise UserError(f"{csv_path}:{line}: {row['path']!r} points outside {root}")
        if not path.is_file():
            raise UserError(f"{csv_path}:{line}: image not found: {row['path']!r}")
        pairs.append((path, label))
    return pairs
