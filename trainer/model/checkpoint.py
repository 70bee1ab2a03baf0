"""Checkpoints: weights as safetensors plus a JSON of everything needed to use them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.errors import UserError

WEIGHTS = "model.safetensors"
METADATA = "model.json"


@dataclass(frozen=True)
class Checkpoint:
    """A saved model: where its files are and what its JSON says."""

    weights: Path  # the .safetensors file
    meta: dict[str, Any]  # backbone, class_names, image_size, mean, std, execution, metrics, config

    @property
    def class_names(self) -> list[str]:
        """Class names in output order."""
        return list(self.meta["class_names"])


def save_checkpoint(
    directory: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Checkpoint:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically.

    Each file is written under a temporary name and renamed, so a crash or a full disk never
    leaves a half-written checkpoint under the real name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    weights, metadata = directory / WEIGHTS, directory / METADATA
    tmp_weights = weights.with_name(f"{weights.name}.{os.getpid()}.tmp")
    tmp_meta = metadata.with_name(f"{metadata.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_weights))
        tmp_meta.write_text(json.dumps(meta, indent=1, default=str))
        os.replace(tmp_weights, weights)
        os.replace(tmp_meta, metadata)
    except OSError as exc:
        for leftover in (tmp_weights, tmp_meta):
            leftover.unlink(missing_ok=True)
        raise UserError(
            f"could not write the checkpoint in {directory}: {exc.strerror or exc}; "
            "free space there or set output.dir to another disk"
        ) from exc
    return Checkpoint(weights, meta)


def find_checkpoint(location: Path) -> Checkpoint:
    """A checkpoint from its folder, its ``.safetensors`` file or its ``.json`` file."""
    location = location.expanduser()
    if location.is_dir():
        location = location / WEIGHTS
    weights = location.with_suffix(".safetensors")
    metadata = location.with_suffix(".json")
    if not weights.is_file() or not metadata.is_file():
        raise UserError(
            f"no checkpoint at {location}: expected {WEIGHTS} and {METADATA} side by side "
            "(a fold or refit folder of a trainer fit)"
        )
    return Checkpoint(weights, json.loads(metadata.read_text()))


def copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights and buffers."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_state(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's weights (safetensors: no pickle) into ``model``."""
    model.load_state_dict(load_file(str(checkpoint.weights)))
