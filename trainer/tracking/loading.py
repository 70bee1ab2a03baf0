"""Load a logged or registered model from its weights, without executing anything it carries.

``mlflow.pyfunc.load_model`` unpickles ``python_model.pkl`` and puts the model's bundled code
on ``sys.path``: loading is executing, so anyone who can register a version on a shared
server could run code on every machine that predicts. Here the model's files are only
downloaded; the classifier is built from its safetensors weights and JSON metadata, and a
model that is not in this project's format is refused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from trainer.errors import UserError, one_line
from trainer.model.checkpoint import METADATA, WEIGHTS, Checkpoint
from trainer.predict import Predictor
from trainer.tracking.served import CHECKPOINT_ARTIFACT
from trainer.tracking.store import quiet_transfers, tracking_uri

REQUIRED_META = (
    "backbone",
    "class_names",
    "image_size",
    "mean",
    "std",
    "precision",
    "channels_last",
    "config",
)


def load_logged_model(uri: str) -> Predictor:
    """The classifier behind an MLflow model URI (``models:/NAME@champion``, ``runs:/ID/model``)."""
    mlflow.set_tracking_uri(tracking_uri())  # registry too: it follows the tracking URI
    quiet_transfers()
    with tempfile.TemporaryDirectory(prefix="trainer-model-") as scratch:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch))
        except (MlflowException, OSError) as exc:
            raise UserError(f"cannot load model {uri}: {one_line(exc, 200)}") from exc
        return Predictor(trainer_checkpoint(local, uri))


def trainer_checkpoint(model_dir: Path, uri: str) -> Checkpoint:
    """The safetensors checkpoint inside a downloaded pyfunc model folder, or a one-line refusal
    for a model that is not in this project's format (nothing in it is unpickled or imported)."""
    refusal = (
        f"{uri} is not a model logged by trainer (expected an MLmodel whose '{CHECKPOINT_ARTIFACT}'"
        f" artifact holds {WEIGHTS} and {METADATA}); refusing to load it, since other models run "
        "their own code when loaded"
    )
    folder = _checkpoint_folder(model_dir)
    if folder is None:
        raise UserError(refusal)
    try:
        meta = json.loads((folder / METADATA).read_text())
    except (OSError, ValueError):
        raise UserError(refusal) from None
    if not isinstance(meta, dict) or any(key not in meta for key in REQUIRED_META):
        raise UserError(refusal)
    return Checkpoint(folder / WEIGHTS, meta)


def _checkpoint_folder(model_dir: Path) -> Path | None:
    """Where the MLmodel file's pyfunc flavour says the checkpoint artifact is (if inside)."""
    try:
        spec: Any = yaml.safe_load((model_dir / "MLmodel").read_text())
        relative = spec["flavors"]["python_function"]["artifacts"][CHECKPOINT_ARTIFACT]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    root = model_dir.resolve()
    folder = (root / str(relative)).resolve()
    if not folder.is_relative_to(root):
        return None
    if not (folder / WEIGHTS).is_file() or not (folder / METADATA).is_file():
        return None
    return folder
