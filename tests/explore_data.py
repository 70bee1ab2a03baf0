"""A small dataset with planted problems for ``trainer explore``, written by real encoders.

Two classes of distinct random-block pictures (PNG by OpenCV, JPEG by Pillow), then:
- an exact copy across the holdout and the data trained on (leakage),
- an exact copy of a ``dog`` picture filed under ``cat`` (a label conflict),
- a resized, re-encoded copy within ``dog`` (a near duplicate),
- a truncated PNG (unreadable),
- a JPEG stored sideways with EXIF orientation 6: upright it is portrait, red above blue.

Copies overwrite existing files, so the list of files and labels, and so the split
assignment (drawn from the order, the labels and the seed only), stay what they were.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from trainer.config import Config, config_from_dict
from trainer.data.dataset import find_samples
from trainer.data.splits import load_or_create_splits

PER_CLASS = 10
SPLIT = {"test_size": 0.2, "folds": 2}
RED, BLUE = (220, 30, 30), (30, 30, 220)


@dataclass(frozen=True)
class Planted:
    """Relative paths of the planted problems."""

    leak: tuple[str, str]  # (holdout copy, original trained on)
    conflict: tuple[str, str]  # (cat copy, dog original)
    near: tuple[str, str]  # (dog re-encoded copy, dog original)
    unreadable: str
    rotated: str


def picture(rng: np.random.Generator) -> np.ndarray:
    """A 48 x 64 RGB picture of random 6 x 8 blocks (distinct perceptual hashes)."""
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(blocks, (64, 48), interpolation=cv2.INTER_NEAREST)


def sideways_jpeg(path: Path) -> None:
    """Stored 64 wide x 32 high, red left and blue right; orientation 6 shows it upright as
    32 wide x 64 high with red above blue."""
    stored = np.zeros((32, 64, 3), dtype=np.uint8)
    stored[:, :32], stored[:, 32:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif.tobytes())


def write_dataset(root: Path) -> None:
    """The clean dataset: cat/ and dog/, PNG and JPEG files, one EXIF-rotated JPEG."""
    rng = np.random.default_rng(7)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for index in range(PER_CLASS):
            image = picture(rng)
            if index % 2:
                Image.fromarray(image).save(root / label / f"img_{index:02d}.jpg", quality=92)
            else:
                cv2.imwrite(str(root / label / f"img_{index:02d}.png"), image[:, :, ::-1])
    sideways_jpeg(root / "cat" / "a_rotated.jpg")
    ok, png = cv2.imencode(".png", picture(rng))
    assert ok
    (root / "dog" / "broken.png").write_bytes(png.tobytes()[: len(png) // 2])  # truncated


def config_of(root: Path, out: Path, tracking: bool = True) -> Config:
    """The config explore and the tests use: the fixture data, outputs under ``out``."""
    raw = {
        "experiment": "explore-test",
        "data": {"root": str(root), **SPLIT},
        "output": {"dir": str(out)},
        "tracking": tracking,
    }
    return config_from_dict(raw)


def plant(root: Path, out: Path) -> Planted:
    """Write the dataset and plant the problems; returns where they are."""
    write_dataset(root)
    found = find_samples(root)
    keep = [i for i in range(len(found)) if found.relative(i) != "dog/broken.png"]
    samples = replace(  # what training keeps: the readable images
        found, paths=tuple(found.paths[i] for i in keep), labels=found.labels[keep]
    )
    splits = load_or_create_splits(samples, out / "assignment.csv", seed=42, val_size=0.2, **SPLIT)
    test = {samples.relative(int(i)) for i in splits.test}
    cats = [p for p in _names(root, "cat") if p != "cat/a_rotated.jpg"]
    dogs = [p for p in _names(root, "dog") if p != "dog/broken.png"]
    held, trained = next(p for p in cats if p in test), next(p for p in cats if p not in test)
    _copy(root, trained, held)
    conflict_cat = next(p for p in cats if p not in test and p != trained)
    conflict_dog = next(p for p in dogs if p not in test)
    _copy(root, conflict_dog, conflict_cat)
    trained_dogs = [p for p in dogs if p != conflict_dog and p not in test]
    near_copy, near_original = [p for p in trained_dogs if p.endswith(".png")][:2]
    original = cv2.imread(str(root / near_original))
    resized = cv2.resize(cv2.resize(original, (128, 96)), (64, 48), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / near_copy), resized)
    return Planted(
        leak=(held, trained),
        conflict=(conflict_cat, conflict_dog),
        near=(near_copy, near_original),
        unreadable="dog/broken.png",
        rotated="cat/a_rotated.jpg",
    )


def _names(root: Path, label: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / label).iterdir())


def _copy(root: Path, source: str, target: str) -> None:
    """Overwrite ``target`` with the bytes of ``source`` (keeping the name and extension)."""
    shutil.copyfile(root / source, root / target)
