"""Image transforms: the one module that imports albumentations (only to augment).

Images are resized once (and cached resized); the per-sample pipelines then augment (training
only) and stack a batch as one ``N x H x W x 3`` uint8 tensor. Normalisation with the
backbone's mean and std happens where the model runs (``trainer.engine.Normalize``): a uint8
batch is a quarter of the bytes of a float32 one to hand from loader workers to the device.
Randomness comes only from ``seed`` arguments, so a batch is augmented the same way whichever
process handles it.

Resizing is a plain ``cv2.resize`` (what ``albumentations.Resize`` runs for an RGB image, pixel
for pixel; a test compares them): predicting, caching and evaluating never import
albumentations, whose import costs about as much as a small model's whole prediction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

# On import, albumentations asks PyPI whether a newer version exists (a blocking request of up
# to 2 s, and a warning when offline); no command of ours should touch the network for that.
# It is imported only where a pipeline augments.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import torch

from trainer.config import AugmentConfig

if TYPE_CHECKING:
    import albumentations as A


@dataclass(frozen=True)
class Resize:
    """Resize an RGB image to ``size x size`` (area interpolation when shrinking)."""

    size: int

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (self.size, self.size):
            return image
        shrinking = image.shape[0] > self.size or image.shape[1] > self.size
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(image, (self.size, self.size), interpolation=interpolation)


class Pipeline:
    """Turns resized RGB uint8 images into a uint8 ``N x H x W x 3`` batch, augmenting if
    training (``augment`` given)."""

    def __init__(self, size: int, augment: AugmentConfig | None) -> None:
        self.size = size
        steps = _augmentations(augment) if augment is not None else []
        self._compose = _compose(steps) if steps else None

    def __call__(self, images: Sequence[np.ndarray], seed: int) -> torch.Tensor:
        """Transform a batch with randomness drawn from ``seed``."""
        if self._compose is None:
            return torch.from_numpy(np.stack(images))
        self._compose.set_random_seed(seed)
        return torch.from_numpy(np.stack([self._compose(image=image)["image"] for image in images]))


def _compose(steps: list[A.BasicTransform]) -> A.Compose:
    import albumentations as A

    return A.Compose(steps, seed=0)


def _augmentations(augment: AugmentConfig) -> list[A.BasicTransform]:
    import albumentations as A

    steps: list[A.BasicTransform] = []
    if augment.rotate_p > 0 and augment.rotate_limit > 0:
        steps.append(
            A.Rotate(
                limit=augment.rotate_limit, border_mode=cv2.BORDER_REFLECT_101, p=augment.rotate_p
            )
        )
    if augment.hflip_p > 0:
        steps.append(A.HorizontalFlip(p=augment.hflip_p))
    if augment.coarse_dropout_p > 0:
        steps.append(
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill=0,
                p=augment.coarse_dropout_p,
            )
        )
    return steps
