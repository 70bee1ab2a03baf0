"""Train one epoch and evaluate: the inner loops. Plain metric dicts out; no tracking here.

Batches arrive as uint8 ``N x H x W x 3`` images (see ``trainer.data.transforms``) and become
normalised float tensors on the device (``Normalize``); float batches are used as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn

from trainer.runtime import Execution


class Normalize:
    """uint8 ``N x H x W x 3`` batches to normalised float ``N x 3 x H x W`` on the device.

    The same arithmetic as albumentations' ``Normalize(max_pixel_value=255)``: ``(x - 255 mean)
    / (255 std)`` per channel, with the constants computed in float64. Channels-last output is
    a free view of HWC data; otherwise the result is made contiguous.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor, execution: Execution) -> torch.Tensor:
        """The model's input for a uint8 batch (moved to the execution's device)."""
        shift, scale = self._on(execution.device)
        images = images.to(execution.device, non_blocking=True).permute(0, 3, 1, 2)
        normalised = (images.float() - shift) * scale
        layout = torch.channels_last if execution.channels_last else torch.contiguous_format
        return normalised.contiguous(memory_format=layout)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._constants:
            mean, std = np.array(self.mean), np.array(self.std)
            shift = torch.tensor(mean * 255.0, dtype=torch.float32).view(1, 3, 1, 1)
            scale = torch.tensor(1.0 / (std * 255.0), dtype=torch.float32).view(1, 3, 1, 1)
            self._constants[device] = (shift.to(device), scale.to(device))
        return self._constants[device]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class BatchProgress(Protocol):
    """Receives each finished batch: number of images and its (device) loss tensor."""

    def __call__(self, images: int, loss: torch.Tensor) -> None: ...


class Scheduler(Protocol):
    """A learning-rate schedule stepped once per batch."""

    def step(self) -> None: ...


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    loss_fn: nn.Module,
    execution: Execution,
    progress: BatchProgress | None = None,
    normalize: Normalize | None = None,
) -> dict[str, float]:
    """One pass over ``batches``, the scheduler stepped after each.

    Returns ``trainer.metrics.TRAIN_KEYS``: ``loss``, ``acc``, ``lr`` (of the epoch's last
    batch), ``seconds`` and ``images_per_second``.
    """
    model.train()
    scaler = torch.amp.GradScaler(execution.device.type, enabled=execution.needs_grad_scaler)
    tally = _Tally(execution.device)
    lr = float(optimizer.param_groups[0]["lr"])
    start = time.perf_counter()
    for images, labels in batches:
        images, labels = _to_device(images, labels, execution, normalize)
        lr = float(optimizer.param_groups[0]["lr"])
        logits, loss = _train_step(model, images, labels, loss_fn, optimizer, scaler, execution)
        scheduler.step()
        tally.add(logits, labels, loss)
        if progress is not None:
            progress(len(labels), loss)
    seconds = time.perf_counter() - start
    mean_loss, accuracy = tally.means()
    if not np.isfinite(mean_loss):
        raise NonFiniteLossError(f"training loss is {mean_loss} (lower train.lr?)")
    return {
        "loss": mean_loss,
        "acc": accuracy,
        "lr": lr,
        "seconds": seconds,
        "images_per_second": tally.seen / seconds if seconds > 0 else 0.0,
    }


class _Tally:
    """Loss and correct predictions summed on the device: no synchronisation per batch."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.seen = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * len(labels)
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        self.seen += len(labels)

    def means(self) -> tuple[float, float]:
        """Mean loss and accuracy over the images seen."""
        return float(self.loss_sum) / max(self.seen, 1), int(self.correct) / max(self.seen, 1)


def _train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    execution: Execution,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and one optimizer step; returns the logits and the loss."""
    with execution.autocast():
        logits = model(images)
    loss = loss_fn(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    execution: Execution,
    normalize: Normalize | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Loss and accuracy (``trainer.metrics.EVAL_KEYS``) over ``batches``, with the class
    probabilities and true labels."""
    model.eval()
    loss_sum, seen = 0.0, 0
    probabilities, targets = [], []
    for images, labels in batches:
        images, labels = _to_device(images, labels, execution, normalize)
        with execution.autocast():
            logits = model(images)
        logits = logits.float()
        loss_sum += float(loss_fn(logits, labels)) * len(labels)
        seen += len(labels)
        probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
        targets.append(labels.cpu().numpy())
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, 0), dtype=np.float32)
    truth = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
    accuracy = float((probs.argmax(axis=1) == truth).mean()) if seen else 0.0
    return {"loss": loss_sum / max(seen, 1), "acc": accuracy}, probs, truth


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    execution: Execution,
    normalize: Normalize | None = None,
) -> np.ndarray:
    """Class probabilities for unlabelled batches of images."""
    model.eval()
    outputs = []
    for images in batches:
        images = model_input(images, execution, normalize)
        with execution.autocast():
            logits = model(images)
        outputs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def model_input(
    images: torch.Tensor, execution: Execution, normalize: Normalize | None
) -> torch.Tensor:
    """A batch on the device as the model takes it: uint8 batches normalised there."""
    if images.dtype == torch.uint8:
        if normalize is None:
            raise TypeError("uint8 image batches need a Normalize with the backbone's mean/std")
        return normalize(images, execution)
    images = images.to(execution.device, non_blocking=True)
    if execution.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _to_device(
    images: torch.Tensor,
    labels: torch.Tensor,
    execution: Execution,
    normalize: Normalize | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    images = model_input(images, execution, normalize)
    return images, labels.to(execution.device, non_blocking=True)
