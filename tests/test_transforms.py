"""Resize and the per-batch pipelines: shapes, dtype, which transforms a config turns on, and
seeded augmentation that does not depend on what ran before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.config import AugmentConfig
from trainer.data.transforms import Pipeline, Resize

OFF = {"rotate_p": 0.0, "hflip_p": 0.0, "coarse_dropout_p": 0.0}


def photos(count: int = 6, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("shape", [(40, 30, 3), (9, 12, 3), (5, 5, 3)])
def test_resize_gives_square_uint8_rgb(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    resized = Resize(20)(image)
    assert resized.shape == (20, 20, 3) and resized.dtype == np.uint8


def test_resize_keeps_an_image_of_the_right_size_as_it_is() -> None:
    image = photos(1, size=12)[0]
    assert Resize(12)(image) is image


def test_shrinking_averages_areas_instead_of_sampling() -> None:
    stripes = np.zeros((16, 16, 3), np.uint8)
    stripes[:, ::4] = 255  # one bright column in four: a sampling resize can miss every one
    shrunk = Resize(4)(stripes)
    assert np.abs(shrunk.astype(int) - 64).max() <= 1


def test_evaluation_pipeline_only_stacks() -> None:
    images = photos()
    batch = Pipeline(16, None)(images, seed=5)
    assert batch.dtype == torch.uint8 and batch.shape == (6, 16, 16, 3)
    assert np.array_equal(batch.numpy(), np.stack(images))


def test_augmentations_at_probability_zero_leave_images_alone() -> None:
    images = photos()
    batch = Pipeline(16, AugmentConfig(**OFF))(images, seed=5)
    assert np.array_equal(batch.numpy(), np.stack(images))


def test_a_certain_flip_mirrors_every_image() -> None:
    images = photos()
    batch = Pipeline(16, AugmentConfig(**{**OFF, "hflip_p": 1.0}))(images, seed=5)
    assert np.array_equal(batch.numpy(), np.stack([image[:, ::-1] for image in images]))


def test_a_batch_seed_gives_the_same_batch_whatever_ran_before_and_in_which_pipeline() -> None:
    augment = AugmentConfig(rotate_p=1.0, hflip_p=0.5, coarse_dropout_p=1.0)
    first = Pipeline(16, augment)
    expected = first(photos(), seed=7)
    first(photos(seed=1), seed=8)  # another batch in between, as a worker would process
    fresh = Pipeline(16, augment)
    assert torch.equal(first(photos(), seed=7), expected)
    assert torch.equal(fresh(photos(), seed=7), expected)


def test_images_of_one_batch_draw_their_own_augmentation() -> None:
    image = photos(1)[0]
    flips = Pipeline(16, AugmentConfig(**{**OFF, "hflip_p": 0.5}))
    batch = flips([image] * 16, seed=3).numpy()
    flipped = [np.array_equal(out, image[:, ::-1]) for out in batch]
    kept = [np.array_equal(out, image) for out in batch]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)
