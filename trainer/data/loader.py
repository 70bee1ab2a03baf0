"""Batches of tensors from a dataset's images: seeded batch sampling and DataLoader settings.

The sampler draws every random number (order and one augmentation seed per batch) in the main
process from ``(seed, epoch)``, and a whole batch is fetched and transformed in one call, so the
same config gives the same batches whatever the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainer.data.cache import ImageCache
from trainer.data.transforms import Pipeline
from trainer.runtime import available_cores

log = logging.getLogger(__name__)

Batch = list[tuple[int, int]]  # (position in the subset, augmentation seed) per image


class SeededBatches(Sampler[Batch]):
    """Batches of positions ``0..n-1``, reshuffled per epoch from ``(seed, epoch)``.

    A trailing batch of one image is dropped when training (BatchNorm cannot train on it).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and seeds the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + int(rest > 1 or (rest == 1 and not self.shuffle))

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**31 - 1, size=len(self))
        for number in range(len(self)):
            chunk = order[number * self.batch_size : (number + 1) * self.batch_size]
            yield [(int(position), int(seeds[number])) for position in chunk]


class ImageSubset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images ``indices`` of a dataset; indexed by whole batches from ``SeededBatches``."""

    def __init__(
        self, cache: ImageCache, labels: np.ndarray, indices: np.ndarray, pipeline: Pipeline
    ) -> None:
        self.cache = cache
        self.labels = torch.as_tensor(labels[indices])
        self.indices = indices
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        positions = [position for position, _ in batch]
        images = [self.cache.get(int(self.indices[position])) for position in positions]
        return self.pipeline(images, seed=batch[0][1]), self.labels[positions]


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are produced on this machine for this device."""

    num_workers: int
    pin_memory: bool


def loader_settings(requested: int | str, device: torch.device) -> LoaderSettings:
    """Resolve ``num_workers: auto``: no worker processes on CPU, up to 8 on CUDA.

    On CPU the model's intra-op threads already use every core; a worker process competes with
    them and measured slower (docs/benchmarks.md, input pipeline), so batches are made in the
    main process once the decoded-image cache is warm.
    """
    cores = available_cores()
    if requested == "auto":
        workers = min(8, cores) if device.type == "cuda" else 0
    else:
        workers = int(requested)
    if workers and "fork" not in multiprocessing.get_all_start_methods():
        log.info("no fork on this platform: loading in the main process to share the cache")
        workers = 0
    return LoaderSettings(num_workers=workers, pin_memory=device.type == "cuda")


def make_loader(
    subset: ImageSubset, batch_size: int, shuffle: bool, seed: int, settings: LoaderSettings
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """A DataLoader over ``subset`` whose batches come from ``SeededBatches``."""
    workers = settings.num_workers
    return DataLoader(
        subset,
        batch_size=None,  # the sampler yields whole batches
        sampler=SeededBatches(len(subset), batch_size, shuffle, seed),
        num_workers=workers,
        pin_memory=settings.pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_init_worker if workers else None,
        multiprocessing_context="fork" if workers else None,
    )


def set_epoch(loader: DataLoader[tuple[torch.Tensor, torch.Tensor]], epoch: int) -> None:
    """Make the loader's next pass yield epoch ``epoch``'s order and augmentation."""
    sampler = loader.sampler
    if isinstance(sampler, SeededBatches):
        sampler.set_epoch(epoch)


def _init_worker(_worker_id: int) -> None:
    # Workers share the machine with the model's threads: one thread each (torch already
    # sets this in its worker loop; OpenCV is single-threaded from trainer.data.images on).
    torch.set_num_threads(1)
