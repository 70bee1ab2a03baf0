"""Small real models for tests: a random test_resnet checkpoint and its logged pyfunc model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
from mlflow import MlflowClient

from trainer.config import Config
from trainer.model.backbone import data_spec
from trainer.model.checkpoint import copy_state, save_checkpoint
from trainer.tracking import ensure_experiment, tracking_uri
from trainer.tracking.served import log_classifier

CLASSES = ("a", "b")


def make_checkpoint(
    directory: Path, image_size: int, classes: tuple[str, ...] = CLASSES, seed: int = 0
) -> Path:
    """A random-weight test_resnet checkpoint as a fit writes it (fp32, no channels_last)."""
    import torch

    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=len(classes))
    spec = data_spec(model)
    config = Config.model_validate(
        {"data": {"root": str(directory)}, "model": {"backbone": "test_resnet"}}
    )
    meta = {
        "backbone": "test_resnet",
        "class_names": list(classes),
        "image_size": image_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "precision": "fp32",
        "channels_last": False,
        "config": config.to_dict(),
    }
    save_checkpoint(directory, copy_state(model), meta)
    return directory


def log_model(checkpoint_dir: Path, experiment: str = "models") -> str:
    """Log the checkpoint as a pyfunc model in a new run; returns the model URI."""
    client = MlflowClient(tracking_uri())
    run = client.create_run(ensure_experiment(client, experiment))
    example = np.zeros((8, 8, 3), dtype=np.uint8)
    uri = log_classifier(client, run.info.run_id, checkpoint_dir, example)
    client.set_terminated(run.info.run_id)
    return uri
