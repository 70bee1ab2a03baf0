"""Load a logged or registered model from its weights, without executing anything it carries.

``mlflow.pyfunc.load_model`` unpickles ``python_model.pkl`` and puts the model's bundled code
on ``sys.path``: loading is executing, so anyone who can register a version on a shared
server could run code on every machine that predicts. Here only the model's ``MLmodel`` file
and the safetensors weights and JSON metadata of the checkpoint artifact it names are read
(never its pickle, environment files or bundled code); the classifier is built from those,
and a model that is not in this project's format is refused in one line.

A model in the embedded store is read in place, found without importing MLflow
(``trainer.tracking.local_registry``); any other is resolved once by MLflow's artifact
repository, which downloads just those three files. This module imports neither ``served``
(the pyfunc machinery) nor the tracker, and mlflow only when it asks MLflow.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from trainer.errors import UserError, one_line
from trainer.model.checkpoint import METADATA, WEIGHTS, Checkpoint
from trainer.tracking.local_registry import local_model_folder
from trainer.tracking.names import CHECKPOINT_ARTIFACT

if TYPE_CHECKING:
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from trainer.predict import Predictor

MLMODEL = "MLmodel"
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
    from trainer.predict import Predictor

    folder = local_model_folder(uri)
    if folder is not None:
        return Predictor(checkpoint_in(folder, uri))
    with tempfile.TemporaryDirectory(prefix="trainer-model-") as scratch:
        return Predictor(download_checkpoint(uri, Path(scratch)))


def checkpoint_in(model_dir: Path, uri: str) -> Checkpoint:
    """The checkpoint inside a local model folder, read in place."""
    relative = checkpoint_path(model_dir / MLMODEL)
    if relative is None:
        raise UserError(refusal(uri))
    root = model_dir.resolve()
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root):
        raise UserError(refusal(uri))
    return trainer_checkpoint(folder / WEIGHTS, folder / METADATA, uri)


def download_checkpoint(uri: str, scratch: Path) -> Checkpoint:
    """Download the model's ``MLmodel`` file, then the two checkpoint files it names.

    MLflow resolves the URI once (an alias cannot move between the files); a model that is not
    in this project's format is refused before any other file of it is fetched.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from trainer.tracking.store import quiet_transfers, tracking_uri

    mlflow.set_tracking_uri(tracking_uri())  # registry too: it follows the tracking URI
    quiet_transfers()
    try:
        repo = get_artifact_repository(uri)
        if MLMODEL not in _file_names(repo, ""):
            raise UserError(refusal(uri))
        relative = checkpoint_path(Path(repo.download_artifacts(MLMODEL, str(scratch))))
        if relative is None or not {WEIGHTS, METADATA} <= _file_names(repo, relative):
            raise UserError(refusal(uri))
        weights, metadata = (
            _inside(Path(repo.download_artifacts(f"{relative}/{name}", str(scratch))), scratch)
            for name in (WEIGHTS, METADATA)
        )
    except (MlflowException, OSError) as exc:
        raise UserError(f"cannot load model {uri}: {one_line(exc, 200)}") from exc
    return trainer_checkpoint(weights, metadata, uri)


def refusal(uri: str) -> str:
    """The one line that refuses a model not logged by trainer."""
    return (
        f"{uri} is not a model logged by trainer (expected an MLmodel whose '{CHECKPOINT_ARTIFACT}'"
        f" artifact holds {WEIGHTS} and {METADATA}); refusing to load it, since other models run "
        "their own code when loaded"
    )


def trainer_checkpoint(weights: Path, metadata: Path, uri: str) -> Checkpoint:
    """The checkpoint of these two files, or a one-line refusal if they are not a trainer
    model's (nothing in them is unpickled or imported)."""
    try:
        meta = json.loads(metadata.read_text())
    except (OSError, ValueError):
        raise UserError(refusal(uri)) from None
    if not isinstance(meta, dict) or any(key not in meta for key in REQUIRED_META):
        raise UserError(refusal(uri))
    if not weights.is_file():
        raise UserError(refusal(uri))
    return Checkpoint(weights, meta)


def checkpoint_path(mlmodel: Path) -> str | None:
    """Where the MLmodel file's pyfunc flavour puts the checkpoint artifact, as a relative path
    inside the model (``None`` if it names none, or one that could lead outside the model)."""
    try:
        spec: Any = yaml.safe_load(mlmodel.read_text())
        relative = spec["flavors"]["python_function"]["artifacts"][CHECKPOINT_ARTIFACT]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    path = PurePosixPath(str(relative))
    if path.is_absolute() or "\\" in str(relative) or ".." in path.parts or not path.parts:
        return None
    return str(path)


def _file_names(repo: ArtifactRepository, folder: str) -> set[str]:
    """Names of the files directly in a folder of the model."""
    return {PurePosixPath(i.path).name for i in repo.list_artifacts(folder or None) if not i.is_dir}


def _inside(path: Path, scratch: Path) -> Path:
    """A downloaded file, which must lie inside the scratch folder."""
    if not path.resolve().is_relative_to(scratch.resolve()):
        raise OSError(f"a model file was downloaded outside {scratch}: {path}")
    return path
