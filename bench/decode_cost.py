"""Cost of the EXIF-aware decode: images/s of decode + resize, before and after.

Before: ``cv2.imdecode(IMREAD_UNCHANGED)`` for a full decode, which ignores the EXIF
orientation. After: ``trainer.data.images.read_rgb``, whose full decode applies it (reduced-scale
JPEG decoding applied it already and is unchanged). Both take turns over the same files, in
one process: the demo's digits (32 px PNGs at 32 px) and 500x375 JPEGs at 224 px (full
decode) and at 64 px (reduced decode).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import save, write_photos
from trainer.data import images
from trainer.data.images import read_rgb, to_rgb8
from trainer.data.sample_data import write_digits
from trainer.data.transforms import Resize

ROUNDS = 9


def read_without_orientation(path: Path, at_least: int | None) -> np.ndarray:
    """The decoder before this change: the same reduced-scale choice, but full decodes with
    ``IMREAD_UNCHANGED``, which ignores the EXIF orientation."""
    data = np.fromfile(path, dtype=np.uint8)
    flag = images._decode_flag(data, at_least)  # the choice itself did not change
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED if flag == images.FULL_DECODE else flag)
    assert image is not None, f"cannot decode {path}"
    return to_rgb8(image)


def images_per_second(
    read: Callable[[Path, int | None], np.ndarray], paths: list[Path], size: int
) -> float:
    resize = Resize(size)
    start = time.perf_counter()
    for path in paths:
        resize(read(path, size))
    return len(paths) / (time.perf_counter() - start)


def measure(paths: list[Path], size: int, label: str) -> dict[str, Any]:
    before: list[float] = []
    after: list[float] = []
    images_per_second(read_rgb, paths[:50], size)  # warm-up
    for _ in range(ROUNDS):
        before.append(images_per_second(read_without_orientation, paths, size))
        after.append(images_per_second(read_rgb, paths, size))
    median_before, median_after = statistics.median(before), statistics.median(after)
    print(f"{label}: {median_before:.0f} -> {median_after:.0f} img/s")
    return {
        "case": label,
        "images": len(paths),
        "image_size": size,
        "before_images_per_second": median_before,
        "after_images_per_second": median_after,
        "before_range": [min(before), max(before)],
        "after_range": [min(after), max(after)],
        "ratio": median_after / median_before,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_digits(root / "digits")
        write_photos(root / "photos")
        digits = sorted((root / "digits").rglob("*.png"))
        photos = sorted((root / "photos").rglob("*.jpg"))[:600]
        cases = [
            measure(digits, 32, "demo digits, 32 px PNG"),
            measure(photos, 224, "500x375 JPEG at 224 px (full decode)"),
            measure(photos, 64, "500x375 JPEG at 64 px (reduced decode)"),
        ]
    print(save("decode_cost", {"rounds": ROUNDS, "cases": cases}))


if __name__ == "__main__":
    main()
