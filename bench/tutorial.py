"""The notebook way of feeding a model, for contrast: read, convert, resize, augment and
normalise every sample on every access, in a default DataLoader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset


class TutorialDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images decoded and transformed per sample; ``augment`` runs between resize and normalise."""

    def __init__(
        self,
        paths: Sequence[Path | str],
        labels: Sequence[int],
        size: int,
        augment: Sequence[A.BasicTransform] = (),
    ) -> None:
        self.paths, self.labels = list(paths), list(labels)
        self.transform = A.Compose([A.Resize(size, size), *augment, A.Normalize(), ToTensorV2()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        decoded = cv2.imread(str(self.paths[index]))
        assert decoded is not None, self.paths[index]
        image = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        return self.transform(image=image)["image"], int(self.labels[index])
