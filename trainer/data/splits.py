"""The stratified holdout and the cross-validation folds, fixed once per dataset in a file.

The split file is a CSV (``path,label,split`` with split ``test`` or the fold number) whose name
carries the data digest and the split settings, so every later run and trial on the same data
with the same settings reads the same assignment instead of drawing a new one.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit, train_test_split

from trainer.data.dataset import Samples
from trainer.errors import UserError

if TYPE_CHECKING:
    from trainer.config import Config

log = logging.getLogger(__name__)

TEST_CODE = -1  # fold_of value of holdout images
TRAIN_ONLY_CODE = -2  # fold_of value of images that train in every fold (folds: 1)
_NAMES = {TEST_CODE: "test", TRAIN_ONLY_CODE: "train"}


@dataclass(frozen=True)
class Splits:
    """Index arrays into a ``Samples``: the holdout and one (train, val) pair per fold."""

    test: np.ndarray  # holdout indices: never trained or validated on
    fold_of: np.ndarray  # validation fold of each image, or TEST_CODE / TRAIN_ONLY_CODE
    path: Path  # the split file this came from

    @property
    def n_folds(self) -> int:
        """Number of folds."""
        return int(self.fold_of.max()) + 1

    @property
    def trainval(self) -> np.ndarray:
        """All non-test indices (the refit's training set)."""
        return np.flatnonzero(self.fold_of != TEST_CODE)

    def fold(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation indices of fold ``k``."""
        trainval = self.fold_of != TEST_CODE
        return np.flatnonzero(trainval & (self.fold_of != k)), np.flatnonzero(self.fold_of == k)


def split_dir(config: Config) -> Path:
    """Where a config's split files (and per-dataset data checks) are kept."""
    return config.data.split_dir or config.output.dir / "splits"


def split_path(config: Config, digest: str) -> Path:
    """The split file a config trains with on the dataset of ``digest``."""
    data = config.data
    name = split_file_name(digest, data.test_size, data.folds, data.val_size, config.seed)
    return split_dir(config) / name


def split_file_name(digest: str, test_size: float, folds: int, val_size: float, seed: int) -> str:
    """The file name that identifies one assignment of one dataset."""
    extra = f"-val{val_size:g}" if folds == 1 else ""
    return f"{digest[:16]}-test{test_size:g}-k{folds}{extra}-seed{seed}.csv"


def load_or_create_splits(
    samples: Samples, path: Path, test_size: float, folds: int, val_size: float, seed: int
) -> Splits:
    """Read the split file at ``path`` if it exists, otherwise draw the splits and write it."""
    if path.exists():
        splits = _read(samples, path)
        log.info("reusing split file %s", path)
        return splits
    fold_of = _draw(samples, test_size, folds, val_size, seed)
    _write(samples, fold_of, path)
    log.info("wrote split file %s", path)
    return Splits(test=np.flatnonzero(fold_of == TEST_CODE), fold_of=fold_of, path=path)


def _draw(samples: Samples, test_size: float, folds: int, val_size: float, seed: int) -> np.ndarray:
    _check_class_sizes(samples, test_size, folds)
    try:
        return _assign(samples, test_size, folds, val_size, seed)
    except ValueError as exc:  # sklearn's own limits, e.g. a holdout smaller than the classes
        raise UserError(
            f"cannot split {len(samples)} images of {len(samples.class_names)} classes into a "
            f"{test_size:g} holdout and {folds} fold(s): {exc}; add images or change "
            "data.test_size / data.folds"
        ) from exc


def _assign(
    samples: Samples, test_size: float, folds: int, val_size: float, seed: int
) -> np.ndarray:
    trainval, _ = train_test_split(
        np.arange(len(samples)), test_size=test_size, stratify=samples.labels, random_state=seed
    )
    trainval = np.sort(trainval)
    labels = samples.labels[trainval]
    if folds == 1:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_size, random_state=seed)
        fold_of = np.full(len(samples), TEST_CODE, dtype=np.int64)
        fold_of[trainval] = TRAIN_ONLY_CODE
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        fold_of = np.full(len(samples), TEST_CODE, dtype=np.int64)
    for k, (_, val) in enumerate(splitter.split(trainval, labels)):
        fold_of[trainval[val]] = k
    return fold_of


def _check_class_sizes(samples: Samples, test_size: float, folds: int) -> None:
    for name, count in samples.class_counts().items():
        expected_trainval = count - int(np.ceil(count * test_size))
        if count < 2 or expected_trainval < max(folds, 2):
            raise UserError(
                f"class {name!r} has {count} image(s): too few for a {test_size:g} holdout and "
                f"{folds} fold(s); add images or lower data.folds"
            )


def _write(samples: Samples, fold_of: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent fits may race
    with temporary.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for index in range(len(samples)):
            writer.writerow(
                [
                    samples.relative(index),
                    samples.class_names[samples.labels[index]],
                    _NAMES.get(int(fold_of[index]), str(int(fold_of[index]))),
                ]
            )
    os.replace(temporary, path)


def _read(samples: Samples, path: Path) -> Splits:
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    labels = [samples.class_names[k] for k in samples.labels.tolist()]
    expected = list(zip(samples.relative_paths, labels, strict=True))
    if [(row["path"], row["label"]) for row in rows] != expected:
        raise UserError(
            f"split file {path} does not match the images in {samples.root}; "
            "delete it to draw new splits, or restore the original images"
        )
    codes = {name: code for code, name in _NAMES.items()}
    fold_of = np.array([codes.get(row["split"]) or int(row["split"]) for row in rows])
    return Splits(test=np.flatnonzero(fold_of == TEST_CODE), fold_of=fold_of, path=path)
