"""Predict classes of new images with a saved checkpoint.

Images are decoded as in training (``trainer.data.images.decode_rgb``: EXIF orientation applied,
large JPEGs at reduced scale). Unreadable files follow the same policy as
``data.on_bad_image``: ``skip`` predicts the rest, warns once and lists them beside the output
(``<out>.skipped.csv``); ``error`` stops with one line.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.data.dataset import image_files, printable
from trainer.data.images import ImageReadError, decode_rgb, read_rgb
from trainer.data.scan import BadImage, write_bad_images
from trainer.data.transforms import Pipeline, Resize
from trainer.engine import Normalize, predict
from trainer.errors import UserError
from trainer.model.backbone import create_model, to_device
from trainer.model.checkpoint import Checkpoint, load_state
from trainer.runtime import Execution, cpu_supports_bf16, select_device

log = logging.getLogger(__name__)


class Predictor:
    """A checkpoint ready to classify raw images (paths or RGB uint8 arrays)."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:
        meta = checkpoint.meta
        self.class_names = checkpoint.class_names
        # Frozen like in training: the same module types (frozen BatchNorm) take the weights.
        frozen = bool(meta["config"]["model"]["freeze_backbone"])
        self.model: nn.Module = create_model(
            ModelConfig(backbone=meta["backbone"], pretrained=False, freeze_backbone=frozen),
            len(self.class_names),
        )
        load_state(self.model, checkpoint)
        resolved = select_device(device)
        precision = _usable_precision(resolved, str(meta["precision"]))
        self.execution = Execution(resolved, precision, bool(meta["channels_last"]))
        self.model = to_device(self.model, self.execution.device, self.execution.channels_last)
        self.image_size = int(meta["image_size"])
        self.resize = Resize(self.image_size)
        self.pipeline = Pipeline(self.image_size, None)
        self.normalize = Normalize(meta["mean"], meta["std"])

    def decode(self, data: bytes) -> np.ndarray:
        """An image file's bytes decoded exactly as training decodes its files."""
        return decode_rgb(data, at_least=self.image_size)

    def read(self, path: Path) -> np.ndarray:
        """An image file decoded exactly as training decodes it."""
        return read_rgb(path, at_least=self.image_size)

    def predict_proba(
        self, images: Sequence[Path | np.ndarray], batch_size: int = 64
    ) -> np.ndarray:
        """Class probabilities, one row per image, columns in ``class_names`` order."""
        return predict(
            self.model, self._batches(images, batch_size), self.execution, self.normalize
        )

    def predict_files(
        self, paths: Sequence[Path], batch_size: int = 64, on_bad_image: str = "skip"
    ) -> tuple[list[Path], np.ndarray, list[BadImage]]:
        """Probabilities of the readable files; returns (those files, their rows, the others).

        Each file is decoded once. ``on_bad_image="error"`` stops at the first unreadable one.
        """
        kept: list[Path] = []
        bad: list[BadImage] = []
        batches = self._file_batches(paths, batch_size, on_bad_image, kept, bad)
        return kept, predict(self.model, batches, self.execution, self.normalize), bad

    def _batches(self, images: Sequence[Path | np.ndarray], size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            arrays = [self.resize(self.read(i) if isinstance(i, Path) else i) for i in chunk]
            yield self.pipeline(arrays, seed=0)

    def _file_batches(
        self, paths: Sequence[Path], size: int, policy: str, kept: list[Path], bad: list[BadImage]
    ) -> Iterator[torch.Tensor]:
        for start in range(0, len(paths), size):
            arrays = []
            for path in paths[start : start + size]:
                try:
                    arrays.append(self.resize(self.read(path)))
                except ImageReadError as error:
                    if policy == "error":
                        raise UserError(
                            f"{error}; fix or remove it, or use --on-bad-image skip"
                        ) from None
                    bad.append(BadImage(str(path), error.reason))
                    continue
                kept.append(path)
            if arrays:
                yield self.pipeline(arrays, seed=0)


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
            found += sorted(image_files(item))
        elif item.is_file():
            found.append(item)
        else:
            raise UserError(f"no such image or folder: {item}")
    if not found:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def skipped_path(out: Path) -> Path:
    """Where ``trainer predict`` lists the images it skipped: beside its output CSV."""
    return out.with_name(f"{out.stem}.skipped.csv")


def predict_to_csv(
    predictor: Predictor,
    inputs: Sequence[Path],
    out: Path,
    batch_size: int = 64,
    on_bad_image: str = "skip",
) -> int:
    """Write ``path,predicted,prob_<class>...`` for every readable image; returns the row count.

    Unreadable images are skipped with one warning and listed in ``<out>.skipped.csv``
    (``on_bad_image="error"`` stops at the first one instead). Nothing readable is an error.
    """
    paths, probs, bad = predictor.predict_files(collect_images(inputs), batch_size, on_bad_image)
    _report_skipped(bad, skipped_path(out))
    if not paths:
        raise UserError(
            f"none of the {len(bad)} image(s) could be read, e.g. {printable(bad[0].path)}: "
            f"{bad[0].reason}"
        )
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


def _report_skipped(bad: list[BadImage], listing: Path) -> None:
    listing.unlink(missing_ok=True)  # a listing from an earlier run would mislead
    if not bad:
        return
    write_bad_images(bad, listing)
    log.warning(
        "skipped %d unreadable image(s) (--on-bad-image skip), e.g. %s: %s; the list is in %s",
        len(bad),
        printable(bad[0].path),
        bad[0].reason,
        listing,
    )
