"""Input pipeline efficiency: trainer throughput over JPEG files ÷ model-only throughput.

A folder of 500x375 JPEGs is generated once. The trainer's pipeline (decoded-image cache,
per-batch seeded augmentation, its DataLoader settings) is timed on its second epoch, once the
cache is warm; the model-only figure trains the same model on the same number of in-memory
tensors. The tutorial's pipeline (decode and augment every sample, default DataLoader) is
timed the same way for contrast. Figure: trainer ÷ model-only (target >= 0.95).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.common import save
from bench.tutorial import TutorialDataset

WORK = Path(__file__).resolve().parent / "work" / "jpegs"
CASES = [("mobilenetv3_small_100", 64), ("resnet18", 128)]


def jpeg_folder(count: int) -> Path:
    """`count` 500x375 JPEGs in two class folders (made once, reused)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        path = WORK / f"c{index % 2}" / f"{index:05d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            cv2.imwrite(str(path), cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC))
    return WORK


def trainer_loader(
    paths: Path,
    size: int,
    batch: int,
    device: Any,
    workers: int | str = "auto",
    pin_memory: bool | None = None,
) -> Any:
    """The trainer's own pipeline over the folder: cache, seeded per-batch augmentation
    (``pin_memory``: instead of the trainer's choice for the device)."""
    from dataclasses import replace

    from trainer.config import AugmentConfig
    from trainer.data.cache import CacheRegistry
    from trainer.data.dataset import find_samples
    from trainer.data.loader import ImageSubset, loader_settings, make_loader
    from trainer.data.scan import fingerprint
    from trainer.data.transforms import Pipeline, Resize

    samples = find_samples(paths)
    # Keyed by the files' digest: regenerated images never read a stale cache entry.
    cache = CacheRegistry().get(fingerprint(samples), samples.paths, Resize(size), 4096)
    pipeline = Pipeline(size, AugmentConfig())
    subset = ImageSubset(cache, samples.labels, np.arange(len(samples)), pipeline)
    settings = loader_settings(workers, device)
    if pin_memory is not None:
        settings = replace(settings, pin_memory=pin_memory)
    return make_loader(subset, batch, True, 0, settings)


def measure(backbone: str, size: int, count: int, batch: int) -> dict[str, Any]:
    """Images/s of the trainer's pipeline, of in-memory tensors and of the tutorial's."""
    from trainer.config import ModelConfig
    from trainer.data.loader import set_epoch
    from trainer.engine import Normalize, train_one_epoch
    from trainer.model.backbone import create_model, data_spec
    from trainer.runtime import Execution, select_device

    folder = jpeg_folder(count)
    device = select_device("auto")  # an accelerator when there is one; the JSON records which
    execution = Execution(device, "fp32", False)
    model = create_model(ModelConfig(backbone=backbone, pretrained=False), 2).to(device)
    spec = data_spec(model)
    normalize = Normalize(spec.mean, spec.std)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def epoch_rate(batches: Any, epoch: int | None = None) -> float:
        if epoch is not None:
            set_epoch(batches, epoch)
        loss = torch.nn.CrossEntropyLoss()
        stats = train_one_epoch(
            model, batches, optimizer, scheduler, loss, execution, normalize=normalize
        )
        return float(stats["images_per_second"])

    loader = trainer_loader(folder, size, batch, device)
    trainer_rates = [epoch_rate(loader, epoch) for epoch in range(3)][1:]  # 1st fills the cache
    tensors = [
        (torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch,)))
        for _ in range(count // batch)
    ]
    model_rate = statistics.median(epoch_rate(tensors) for _ in range(2))
    paths = sorted(folder.rglob("*.jpg"))
    augment = [A.Rotate(limit=15, p=0.5), A.HorizontalFlip(p=0.5), A.CoarseDropout(p=0.5)]
    dataset = TutorialDataset(paths, [int(p.parent.name[1:]) for p in paths], size, augment)
    tutorial = DataLoader(dataset, batch_size=batch, shuffle=True)
    tutorial_rate = statistics.median(epoch_rate(tutorial) for _ in range(2))
    trainer_rate = statistics.median(trainer_rates)
    return {
        "backbone": backbone,
        "image_size": size,
        "images": count,
        "batch": batch,
        "trainer_images_per_second": trainer_rate,
        "model_only_images_per_second": model_rate,
        "tutorial_images_per_second": tutorial_rate,
        "efficiency": trainer_rate / model_rate,
        "tutorial_efficiency": tutorial_rate / model_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for backbone, size in CASES:
        start = time.perf_counter()
        row = measure(backbone, size, args.images, args.batch)
        rows.append(row)
        print(
            f"{backbone} {size}px: trainer {row['trainer_images_per_second']:.0f} img/s, model only "
            f"{row['model_only_images_per_second']:.0f}, tutorial {row['tutorial_images_per_second']:.0f}: "
            f"efficiency {row['efficiency']:.2f} (tutorial {row['tutorial_efficiency']:.2f}) "
            f"[{time.perf_counter() - start:.0f} s]"
        )
    save(
        "input_pipeline",
        {"mode": f"{args.images} images", "cases": rows, "target_efficiency": 0.95},
    )


if __name__ == "__main__":
    main()
