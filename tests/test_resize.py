"""``Resize`` is a plain ``cv2.resize`` so that predicting never imports albumentations: it must
give albumentations' ``Resize`` pixel for pixel (cached images and trained models rely on it)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from trainer.data.transforms import Resize


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(500, 375, 224), (31, 40, 32), (10, 10, 64), (64, 64, 32), (33, 17, 20), (7, 900, 128)],
)
def test_resize_is_albumentations_resize(height: int, width: int, size: int) -> None:
    image = np.random.default_rng(size).integers(0, 256, (height, width, 3), dtype=np.uint8)
    shrinking = height > size or width > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    expected = A.Resize(size, size, interpolation=interpolation, p=1.0)(image=image)["image"]
    resized = Resize(size)(image)
    assert resized.dtype == np.uint8 and resized.shape == (size, size, 3)
    assert np.array_equal(resized, expected)
