"""uint8 batches to the device: normalised there exactly as the old CPU path did."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from trainer.config import AugmentConfig
from trainer.data.transforms import Pipeline
from trainer.engine import Normalize, model_input
from trainer.runtime import Execution

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as most backbones


def images(count: int = 4, size: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    batch[0][:] = 0  # both ends of the uint8 range
    batch[1][:] = 255
    return batch


def old_cpu_path(batch: list[np.ndarray]) -> torch.Tensor:
    """What the loader workers produced before: albumentations' Normalize, then CHW floats."""
    compose = A.Compose([A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0), ToTensorV2()])
    return torch.stack([compose(image=image)["image"] for image in batch])


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_normalisation_equals_the_old_cpu_path(channels_last: bool) -> None:
    batch = images()
    uint8 = Pipeline(24, None)(batch, seed=0)
    assert uint8.dtype == torch.uint8 and uint8.shape == (4, 24, 24, 3)
    execution = Execution(torch.device("cpu"), "fp32", channels_last)
    normalised = model_input(uint8, execution, Normalize(MEAN, STD))
    expected = old_cpu_path(batch)
    assert normalised.dtype == torch.float32 and normalised.shape == expected.shape
    assert torch.allclose(normalised, expected, atol=1e-6, rtol=0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert normalised.is_contiguous(memory_format=layout)


def test_float_batches_pass_through_and_uint8_needs_a_normalize() -> None:
    execution = Execution(torch.device("cpu"), "fp32", False)
    floats = torch.randn(2, 3, 8, 8)
    assert torch.equal(model_input(floats, execution, None), floats)
    with pytest.raises(TypeError, match="uint8 image batches need a Normalize"):
        model_input(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), execution, None)


def test_training_batches_are_uint8_and_seeded() -> None:
    pipeline = Pipeline(24, AugmentConfig(rotate_p=1.0, hflip_p=0.5, coarse_dropout_p=1.0))
    first, again = pipeline(images(), seed=7), pipeline(images(), seed=7)
    other = pipeline(images(), seed=8)
    assert first.dtype == torch.uint8 and first.shape == (4, 24, 24, 3)
    assert torch.equal(first, again) and not torch.equal(first, other)
