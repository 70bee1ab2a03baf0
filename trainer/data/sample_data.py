"""A small real dataset that ships inside a dependency: scikit-learn's handwritten digits."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from sklearn.datasets import load_digits

from trainer.errors import UserError

log = logging.getLogger(__name__)


def write_digits(
    out_dir: Path, classes: int = 10, per_class: int | None = None, size: int = 32
) -> int:
    """Write the 8x8 digits as ``size`` px grayscale PNGs in one folder per class.

    ``classes`` keeps digits 0..classes-1; ``per_class`` keeps the first N of each. Returns the
    number of images written. Existing files with the same names are overwritten.
    """
    if not 2 <= classes <= 10:
        raise UserError(f"--classes must be between 2 and 10, got {classes}")
    digits = load_digits()
    written = 0
    for digit in range(classes):
        folder = out_dir / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        images = digits.images[digits.target == digit][:per_class]
        for number, image in enumerate(images):
            pixels = (image * (255.0 / 16.0)).astype(np.uint8)
            large = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"{digit}_{number:04d}.png"), large)
            written += 1
    log.info("wrote %d images of %d classes to %s", written, classes, out_dir)
    return written
