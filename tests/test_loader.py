"""Batches from the loader: uint8 NHWC images with their labels, seeded order and augmentation
per epoch, the same batches with or without worker processes, and the settings per device."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import AugmentConfig
from trainer.data import loader
from trainer.data.cache import ImageCache
from trainer.data.dataset import Samples, find_samples
from trainer.data.loader import (
    ImageSubset,
    LoaderSettings,
    SeededBatches,
    loader_settings,
    make_loader,
    set_epoch,
)
from trainer.data.transforms import Pipeline, Resize

SIZE = 12
MAIN_PROCESS = LoaderSettings(num_workers=0, pin_memory=False)
AUGMENT = AugmentConfig(rotate_p=1.0, hflip_p=0.5, coarse_dropout_p=1.0)
NEEDS_FORK = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="workers need fork"
)


@pytest.fixture(scope="module")
def samples(digits_dir: Path) -> Samples:
    return find_samples(digits_dir)


def subset(samples: Samples, count: int, augment: AugmentConfig | None) -> ImageSubset:
    cache = ImageCache(samples.paths, Resize(SIZE), capacity=len(samples))
    indices = np.arange(0, 2 * count, 2)  # every other image: positions differ from indices
    return ImageSubset(cache, samples.labels, indices, Pipeline(SIZE, augment))


def epoch(batches: torch.utils.data.DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in batches]


def same(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y)
        for pair_a, pair_b in zip(a, b, strict=True)
        for x, y in zip(pair_a, pair_b, strict=True)
    )


def test_evaluation_batches_are_uint8_nhwc_in_order_with_their_labels(samples: Samples) -> None:
    images = subset(samples, 10, None)
    batches = epoch(make_loader(images, 4, False, seed=0, settings=MAIN_PROCESS))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]  # nothing dropped
    for number, (pixels, labels) in enumerate(batches):
        assert pixels.dtype == torch.uint8 and pixels.shape[1:] == (SIZE, SIZE, 3)
        positions = range(4 * number, 4 * number + len(labels))
        expected = [images.cache.get(int(images.indices[p])) for p in positions]
        assert np.array_equal(pixels.numpy(), np.stack(expected))
        assert labels.tolist() == [int(samples.labels[images.indices[p]]) for p in positions]


def test_training_shuffles_every_image_once_and_drops_a_lone_last_one() -> None:
    sampler = SeededBatches(9, 4, shuffle=True, seed=3)
    positions = [p for batch in sampler for p, _ in batch]
    assert len(sampler) == 2 and len(positions) == 8 and len(set(positions)) == 8
    assert positions != sorted(positions)
    assert len(SeededBatches(9, 4, shuffle=False, seed=3)) == 3


def test_set_epoch_changes_order_and_augmentation_and_an_epoch_repeats(samples: Samples) -> None:
    batches = make_loader(subset(samples, 12, AUGMENT), 4, True, seed=0, settings=MAIN_PROCESS)
    first = epoch(batches)
    assert all(images.dtype == torch.uint8 for images, _ in first)
    assert same(epoch(batches), first)  # no set_epoch: the same epoch again
    set_epoch(batches, 1)
    second = epoch(batches)
    assert not same(second, first)
    set_epoch(batches, 0)
    assert same(epoch(batches), first)


def test_augmentation_seeds_differ_between_epochs_for_the_same_order() -> None:
    sampler = SeededBatches(8, 8, shuffle=False, seed=0)
    seeds = []
    for number in range(2):
        sampler.set_epoch(number)
        seeds.append([seed for batch in sampler for _, seed in batch])
    assert seeds[0] != seeds[1]


@NEEDS_FORK
def test_worker_processes_yield_the_main_process_batches(samples: Samples) -> None:
    images = subset(samples, 12, AUGMENT)
    workers = LoaderSettings(num_workers=2, pin_memory=False)
    in_main = make_loader(images, 4, True, seed=1, settings=MAIN_PROCESS)
    in_workers = make_loader(images, 4, True, seed=1, settings=workers)
    assert same(epoch(in_workers), epoch(in_main))


def test_loader_settings_on_cpu_make_batches_in_the_main_process() -> None:
    assert loader_settings("auto", torch.device("cpu")) == MAIN_PROCESS
    assert loader_settings(0, torch.device("cpu")) == MAIN_PROCESS


@NEEDS_FORK
def test_loader_settings_on_cuda_use_workers_and_pinned_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loader, "available_cores", lambda: 3)
    assert loader_settings("auto", torch.device("cuda")) == LoaderSettings(3, True)
    monkeypatch.setattr(loader, "available_cores", lambda: 32)
    assert loader_settings("auto", torch.device("cuda")) == LoaderSettings(8, True)
    assert loader_settings("2", torch.device("cpu")) == LoaderSettings(2, False)
