"""Predict classes of new images with a saved checkpoint."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from trainer.checkpoint import Checkpoint, find_checkpoint, load_state
from trainer.dataset import IMAGE_EXTENSIONS
from trainer.engine import predict
from trainer.errors import UserError
from trainer.images import read_rgb
from trainer.model import freeze_backbone
from trainer.runtime import Execution, cpu_supports_bf16, select_device
from trainer.transforms import Pipeline, Resize

log = logging.getLogger(__name__)


class Predictor:
    """A checkpoint ready to classify raw images (paths or RGB uint8 arrays)."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:
        meta = checkpoint.meta
        self.class_names = checkpoint.class_names
        self.model: nn.Module = timm.create_model(
            meta["backbone"], pretrained=False, num_classes=len(self.class_names)
        )
        if meta["config"]["model"]["freeze_backbone"]:
            freeze_backbone(self.model)  # same module types (frozen BatchNorm) as in training
        load_state(self.model, checkpoint)
        resolved = select_device(device)
        precision = _usable_precision(resolved, str(meta["precision"]))
        self.execution = Execution(resolved, precision, bool(meta["channels_last"]))
        self.model.to(self.execution.device)
        if self.execution.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.resize = Resize(int(meta["image_size"]))
        self.pipeline = Pipeline(int(meta["image_size"]), meta["mean"], meta["std"], None)

    def predict_proba(
        self, images: Sequence[Path | np.ndarray], batch_size: int = 64
    ) -> np.ndarray:
        """Class probabilities, one row per image, columns in ``class_names`` order."""
        return predict(self.model, self._batches(images, batch_size), self.execution)

    def _batches(self, images: Sequence[Path | np.ndarray], size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            arrays = [self.resize(read_rgb(i) if isinstance(i, Path) else i) for i in chunk]
            yield self.pipeline(arrays, seed=0)


def _predictor(model: str) -> Predictor:
    if model.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from trainer.tracking import load_logged_model  # the one module that imports mlflow

        return load_logged_model(model).predictor
    return Predictor(find_checkpoint(Path(model)))


def _usable_precision(device: torch.device, trained: str) -> str:
    """The precision the model was validated with, unless this device cannot run it."""
    if device.type == "cpu" and (
        trained == "fp16" or (trained == "bf16" and not cpu_supports_bf16())
    ):
        return "fp32"
    return trained


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly or found (recursively) under named folders, sorted."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif item.is_file():
            found.append(item)
        else:
            raise UserError(f"no such image or folder: {item}")
    if not found:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def predict_to_csv(model: str, inputs: Sequence[Path], out: Path, batch_size: int = 64) -> int:
    """Write ``path,predicted,prob_<class>...`` for every image; returns the number of rows.

    ``model`` is a checkpoint folder or file, or an MLflow model URI (``models:/NAME@alias``,
    ``runs:/RUN_ID/model``).
    """
    predictor = _predictor(model)
    paths = collect_images(inputs)
    probs = predictor.predict_proba(paths, batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "predicted", *(f"prob_{c}" for c in predictor.class_names)])
        for path, row in zip(paths, probs, strict=True):
            writer.writerow(
                [str(path), predictor.class_names[int(row.argmax())], *(f"{p:.6f}" for p in row)]
            )
    log.info("wrote %d predictions to %s", len(paths), out)
    return len(paths)
