"""GPU feeding: trainer ÷ model-only images/s, GPU busy during a study, first-epoch penalty.

On a CUDA device (issue 14's targets): resnet18 and efficientnet_b0 at 224 px, batch 32 and
128, trained from generated 500x375 JPEGs through the trainer's own data path (disk cache,
uint8 batches normalised on the device) and from normalised tensors already on the GPU; the
GPU's busy fraction (``nvidia-smi``) during a short study of small images; and the first
epoch's time ÷ a later epoch's of a depthwise backbone at an image size new to the process.

Without CUDA it prints one line and exits 0 (``--smoke`` runs every code path on any device
with timm's tiny test models, to check the script; its figures mean nothing and are not saved).
Writes ``bench/results/gpu_pipeline.json``; ``python -m bench.docs`` adds its section.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.common import save
from bench.input_pipeline import jpeg_folder
from trainer.callbacks import Callback, FoldInfo
from trainer.metrics import TRAIN_NAMES


@dataclass(frozen=True)
class Settings:
    """What one run of the benchmark measures."""

    cases: tuple[tuple[str, int], ...]  # (backbone, batch size)
    size: int  # image side of the feeding cases
    images: int  # generated 500x375 JPEGs
    depthwise: str  # backbone of the first-epoch case
    study_sizes: tuple[int, ...]  # image sizes the study searches
    study_backbone: str


FULL = Settings(
    cases=(("resnet18", 32), ("resnet18", 128), ("efficientnet_b0", 32), ("efficientnet_b0", 128)),
    size=224,
    images=3072,
    depthwise="efficientnet_b0",
    study_sizes=(32, 64),
    study_backbone="resnet18",
)
SMOKE = Settings(
    cases=(("test_resnet", 8), ("test_efficientnet", 16)),
    size=32,
    images=64,
    depthwise="test_efficientnet",
    study_sizes=(16, 24),
    study_backbone="test_resnet",
)


def execution_for(device: torch.device, backbone: str, size: int, batch: int) -> Any:
    """The execution mode the trainer's ``auto`` picks for this model here."""
    from trainer.config import RuntimeConfig
    from trainer.model.backbone import create_probe
    from trainer.runtime import resolve_execution

    probe = create_probe(backbone)
    return resolve_execution(RuntimeConfig(device=device.type), probe, size, batch, key=backbone)


def feeding_case(backbone: str, batch: int, size: int, images: int) -> dict[str, Any]:
    """Trainer ÷ model-only images/s for one backbone and batch size."""
    from bench.input_pipeline import trainer_loader
    from trainer.config import ModelConfig
    from trainer.data.loader import set_epoch
    from trainer.engine import Normalize, train_one_epoch
    from trainer.model.backbone import create_model, data_spec, to_device
    from trainer.runtime import select_device

    device = select_device("auto")
    execution = execution_for(device, backbone, size, batch)
    model = create_model(ModelConfig(backbone=backbone, pretrained=False), 2)
    model = to_device(model, device, execution.channels_last)
    spec, loss = data_spec(model), torch.nn.CrossEntropyLoss()
    normalize = Normalize(spec.mean, spec.std)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def rate(batches: Any) -> float:
        stats = train_one_epoch(
            model, batches, optimizer, scheduler, loss, execution, normalize=normalize
        )
        return float(stats["images_per_second"])

    loader = trainer_loader(jpeg_folder(images), size, batch, device)
    trainer_rates = []
    for epoch in range(4):  # the first fills the cache and warms the kernels
        set_epoch(loader, epoch)
        trainer_rates.append(rate(loader))
    set_epoch(loader, 4)
    loader_rate = loader_only_rate(loader, device)
    resident = resident_batches(normalize, execution, batch, size, images)
    model_rates = [rate(resident) for _ in range(3)]
    trainer_rate, model_rate = statistics.median(trainer_rates[1:]), statistics.median(model_rates)
    return {
        "backbone": backbone,
        "batch": batch,
        "image_size": size,
        "execution": execution.describe(),
        "trainer_images_per_second": trainer_rate,
        "model_only_images_per_second": model_rate,
        "loader_only_images_per_second": loader_rate,
        "ratio": trainer_rate / model_rate,
    }


def loader_only_rate(loader: Any, device: torch.device, copy: bool = True) -> float:
    """Images/s of the data path alone: batches made and (``copy``) copied to the device, no
    model."""
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        if copy:
            images.to(device, non_blocking=True)
        count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def steady_loader_rate(loader: Any, device: torch.device, copy: bool = True) -> float:
    """``loader_only_rate`` over two epochs after a first that starts the workers (median)."""
    from trainer.data.loader import set_epoch

    rates = []
    for epoch in range(3):
        set_epoch(loader, epoch)
        rates.append(loader_only_rate(loader, device, copy))
    return statistics.median(rates[1:])


def serial_steps(settings: Settings) -> list[dict[str, Any]]:
    """Where the data path's serial part goes, at the second feeding case's batch size with the
    default workers: batches received from the workers only; also pinned (the DataLoader's pin
    thread); also copied to the device; received and copied without pinning."""
    from bench.input_pipeline import trainer_loader
    from trainer.runtime import select_device

    device, (_, batch) = select_device("auto"), settings.cases[1]
    folder, rows = jpeg_folder(settings.images), []
    for pin, copy in ((False, False), (True, False), (True, True), (False, True)):
        loader = trainer_loader(folder, settings.size, batch, device, pin_memory=pin)
        rate = steady_loader_rate(loader, device, copy)
        rows.append({"pinned": pin, "copied": copy, "images_per_second": rate})
    return rows


def worker_scaling(settings: Settings, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """The data path's images/s alone at each number of loader workers (the ceiling that
    ``data.num_workers`` sets), at the second batch size of the feeding cases."""
    from bench.input_pipeline import trainer_loader
    from trainer.runtime import select_device

    device, (_, batch) = select_device("auto"), settings.cases[1]
    rows = []
    for workers in counts:
        loader = trainer_loader(jpeg_folder(settings.images), settings.size, batch, device, workers)
        rate = steady_loader_rate(loader, device)
        rows.append({"workers": workers, "images_per_second": rate})
    return rows


def resident_batches(
    normalize: Any, execution: Any, batch: int, size: int, images: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised batches already on the device: the model-only baseline's input."""
    pixels = (batch, size, size, 3)
    return [
        (
            normalize(torch.randint(0, 256, pixels, dtype=torch.uint8), execution),
            torch.randint(0, 2, (batch,), device=execution.device),
        )
        for _ in range(max(1, images // batch))
    ]


def autotune_cost(backbone: str, batch: int, size: int) -> dict[str, Any]:
    """Model-only images/s with deterministic kernels (the default) and with cuDNN autotuning
    (``runtime.deterministic: false``), alternating three times after a warm-up epoch each."""
    from trainer.config import ModelConfig
    from trainer.engine import Normalize, train_one_epoch
    from trainer.model.backbone import create_model, data_spec, to_device
    from trainer.runtime import seed_everything, select_device

    device = select_device("auto")
    execution = execution_for(device, backbone, size, batch)
    model = create_model(ModelConfig(backbone=backbone, pretrained=False), 2)
    model = to_device(model, device, execution.channels_last)
    spec = data_spec(model)
    batches = resident_batches(Normalize(spec.mean, spec.std), execution, batch, size, 1024)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss = torch.nn.CrossEntropyLoss()
    rates: dict[str, list[float]] = {"deterministic": [], "autotuned": []}
    try:
        for _, mode in [(r, m) for r in range(4) for m in rates]:
            seed_everything(0, deterministic=mode == "deterministic")
            stats = train_one_epoch(model, batches, optimizer, scheduler, loss, execution)
            rates[mode].append(float(stats["images_per_second"]))
    finally:
        seed_everything(0, deterministic=True)
    medians = {mode: statistics.median(values[1:]) for mode, values in rates.items()}
    return {
        "backbone": backbone,
        "batch": batch,
        "images_per_second": medians,
        "deterministic_over_autotuned": medians["deterministic"] / medians["autotuned"],
    }


class EpochSeconds(Callback):
    """Collects each epoch's training seconds."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        self.seconds.append(metrics[TRAIN_NAMES["seconds"]])


def first_epoch_penalty(settings: Settings, root: Path) -> dict[str, Any]:
    """First epoch ÷ a later one, for a depthwise backbone at a size new to this process."""
    from trainer.config import config_from_dict
    from trainer.fit import fit

    size = settings.size + 32  # a shape the feeding cases did not compile kernels for
    raw = {
        "experiment": "gpu-bench",
        "data": {"root": str(jpeg_folder(settings.images)), "folds": 1, "test_size": 0.1},
        "model": {"backbone": settings.depthwise, "pretrained": False},
        "train": {"image_size": size, "batch_size": 64, "epochs": 3},
        "runtime": {"progress": False},
        "output": {"dir": str(root / "out")},
        "tracking": False,
    }
    epochs = EpochSeconds()
    fit(config_from_dict(raw), [epochs])
    later = statistics.median(epochs.seconds[1:])
    return {
        "backbone": settings.depthwise,
        "image_size": size,
        "epoch_seconds": epochs.seconds,
        "first_over_later": epochs.seconds[0] / later,
    }


def busy_during_study(settings: Settings, root: Path) -> dict[str, Any]:
    """Mean GPU utilisation (nvidia-smi, every 200 ms) during a short study of small images."""
    import yaml

    from trainer.data.sample_data import write_digits

    write_digits(root / "digits")
    study = {
        "name": "gpu-busy",
        "n_trials": 4,
        "base": {
            "data": {"root": str(root / "digits"), "folds": 2},
            "model": {"backbone": settings.study_backbone, "pretrained": False},
            "train": {"batch_size": 128, "epochs": 3},
            "runtime": {"progress": False},
            "output": {"dir": str(root / "out")},
            "tracking": {"log_model": False, "plots": False, "system_metrics": False},
        },
        "search_space": {
            "train.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
            "train.image_size": {"type": "categorical", "choices": list(settings.study_sizes)},
        },
        "pruner": {"type": "none"},
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_utilisation, args=(samples, stop), daemon=True)
    sampler.start()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    command = [sys.executable, "-m", "studies", "run", str(path), "--storage", str(root / "j.log")]
    subprocess.run(command, check=True, env=env, cwd=root)
    stop.set()
    sampler.join()
    return {
        "study": f"{study['n_trials']} trials, digits at {settings.study_sizes} px",
        "samples": len(samples),
        "busy_fraction": statistics.mean(samples) / 100 if samples else None,
    }


def _sample_utilisation(samples: list[float], stop: threading.Event) -> None:
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    while not stop.wait(0.2):
        try:
            output = subprocess.run(query, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return  # no nvidia-smi: the figure stays empty
        samples.append(float(output.split()[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on any device, unsaved")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available() and not args.smoke:
        print("bench.gpu_pipeline: skipped, no CUDA device (its figures are measured on a GPU)")
        return
    settings = SMOKE if args.smoke else FULL
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name() if not args.smoke else "smoke"}

    def keep(key: str, value: Any, line: str) -> None:
        # saved after each stage, so a run cut off by its time limit still leaves its figures
        result[key] = value
        print(line, flush=True)
        if not args.smoke:
            save("gpu_pipeline", {**result, "complete": False})

    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("TIMM_STUDIES_CACHE", str(Path(scratch) / "cache"))
        cases: list[dict[str, Any]] = []
        for backbone, batch in settings.cases:
            cases.append(feeding_case(backbone, batch, settings.size, settings.images))
            case = cases[-1]
            line = f"{backbone} batch {batch}: ratio {case['ratio']:.2f}, data path alone "
            keep("cases", cases, line + f"{case['loader_only_images_per_second']:.0f} img/s")
        counts = (4, 8, 12, 15) if not args.smoke else (0, 2)
        scaling = worker_scaling(settings, counts)
        keep("worker_scaling", scaling, f"data path alone by workers: {scaling}")
        steps = serial_steps(settings)
        keep("serial_steps", steps, f"data path's serial steps: {steps}")
        backbone, batch = settings.cases[1]
        autotune = autotune_cost(backbone, batch, settings.size)
        ratio = autotune["deterministic_over_autotuned"]
        keep("autotune", autotune, f"deterministic ÷ autotuned: {ratio:.2f}")
        penalty = first_epoch_penalty(settings, Path(scratch))
        keep("first_epoch", penalty, f"first epoch ÷ later: {penalty['first_over_later']:.2f}")
        busy = busy_during_study(settings, Path(scratch))
        keep("study_busy", busy, f"GPU busy during the study: {busy['busy_fraction']}")
    if args.smoke:
        print("smoke run: not saved")
        return
    print(save("gpu_pipeline", {**result, "complete": True}))


if __name__ == "__main__":
    main()
