"""Image transforms: the one module that imports albumentations.

Images are resized once (and cached resized); the per-sample pipelines then augment (training
only), normalise with the backbone's own mean and std, and convert to a CHW float tensor.
Randomness comes only from ``seed`` arguments, so a batch is augmented the same way whichever
process handles it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

# On import, albumentations asks PyPI whether a newer version exists (a blocking request of up
# to 2 s, and a warning when offline); no command of ours should touch the network for that.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from trainer.config import AugmentConfig


@dataclass(frozen=True)
class Resize:
    """Resize an RGB image to ``size x size`` (area interpolation when shrinking)."""

    size: int

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (self.size, self.size):
            return image
        shrinking = image.shape[0] > self.size or image.shape[1] > self.size
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resize = A.Resize(self.size, self.size, interpolation=interpolation, p=1.0)
        return np.asarray(resize(image=image)["image"])


class Pipeline:
    """Turns resized RGB uint8 images into normalised tensors, augmenting if training."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentConfig | None,
    ) -> None:
        self.size = size
        steps: list[A.BasicTransform] = []
        if augment is not None:
            steps = _augmentations(augment)
        steps += [
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            ToTensorV2(),
        ]
        self._compose = A.Compose(steps, seed=0)

    def __call__(self, images: Sequence[np.ndarray], seed: int) -> torch.Tensor:
        """Transform a batch with randomness drawn from ``seed``; returns N x C x H x W."""
        self._compose.set_random_seed(seed)
        return torch.stack([self._compose(image=image)["image"] for image in images])


def _augmentations(augment: AugmentConfig) -> list[A.BasicTransform]:
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
