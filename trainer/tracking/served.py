"""The fit's model as an MLflow pyfunc model, for ``mlflow models serve`` and the registry.

Serving trusts the registry: ``mlflow.pyfunc.load_model`` (and so ``mlflow models serve``)
unpickles the model class and runs its bundled code. ``trainer predict`` does not take this
path; it builds the classifier from the safetensors checkpoint (``trainer.tracking.loading``).

Requests carry images as base64-encoded files in column ``image``. File paths are refused
unless the model config's ``tracking.serve_paths`` is true: logged so (the trainer config key
of that name), loaded with ``model_config={"tracking.serve_paths": True}``, or served with
``MLFLOW_PYFUNC_INFERENCE_CONFIG='{"tracking.serve_paths": true}'``. A caller must not be able
to probe the server's files. A bad row is an HTTP 400 naming the row and the problem.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
import types
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.utils import environment as mlflow_environment

from trainer import provenance
from trainer.data.images import ImageReadError, encode_png_base64
from trainer.interrupts import shielded
from trainer.model.checkpoint import find_checkpoint
from trainer.tracking.names import CHECKPOINT_ARTIFACT
from trainer.tracking.store import is_database_uri, quiet

# The model config key, named like the trainer config key: MLflow also logs it as a run param.
SERVE_PATHS = "tracking.serve_paths"
_PATH_HINT = "send the image file's bytes as base64 instead"


def model_signature(class_names: Sequence[str]) -> ModelSignature:
    """Input: column ``image`` (base64 image file); output: label and class probabilities."""
    outputs = [
        ColSpec("string", "predicted"),
        *(ColSpec("double", f"prob_{c}") for c in class_names),
    ]
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", "image")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(list(outputs)))


class BadRequest(MlflowException):
    """A request the model cannot answer; the scoring server returns it as HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ImageClassifier(PythonModel):
    """A fitted checkpoint as an MLflow pyfunc model that takes raw images.

    ``predict`` takes a DataFrame with an ``image`` column of base64-encoded image files (or
    file paths, where allowed) and returns ``predicted`` plus one ``prob_<class>`` column per
    class, after the same decoding, resize and normalisation as in training. ``classify`` also
    takes RGB arrays.
    """

    allow_paths = False

    def load_context(self, context: Any) -> None:
        """Load the checkpoint logged with the model."""
        from trainer.predict import Predictor

        self.predictor = Predictor(find_checkpoint(Path(context.artifacts[CHECKPOINT_ARTIFACT])))
        self.allow_paths = bool((context.model_config or {}).get(SERVE_PATHS, False))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Classify the images of ``model_input["image"]``; bad rows are HTTP 400."""
        if "image" not in model_input or len(model_input) == 0:
            raise BadRequest("the request has no images: send one or more rows in column 'image'")
        images = [self._image(row, item) for row, item in enumerate(model_input["image"])]
        return self.classify(images)

    def classify(self, images: Sequence[Path | np.ndarray]) -> pd.DataFrame:
        """Labels and probabilities for file paths or RGB uint8 arrays."""
        probs = self.predictor.predict_proba(list(images))
        names = self.predictor.class_names
        frame = pd.DataFrame(probs.astype(np.float64), columns=[f"prob_{c}" for c in names])
        frame.insert(0, "predicted", [names[i] for i in probs.argmax(axis=1)])
        return frame

    def _image(self, row: int, item: Any) -> Path | np.ndarray:
        """One request value decoded, or a 400 naming the row."""
        if isinstance(item, np.ndarray):
            return item
        if isinstance(item, bytes):
            return self._decoded(row, item)
        text = str(item).strip()
        if self.allow_paths and _is_file(text):
            return Path(text)
        if _looks_like_path(text):
            where = (
                "no image file at that path"
                if self.allow_paths
                else ("file paths are not accepted by this model server")
            )
            raise BadRequest(f"row {row}: {where}; {_PATH_HINT}")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"row {row}: the image is not valid base64 (column 'image' takes a base64-encoded "
                "image file)"
            ) from None
        return self._decoded(row, data)

    def _decoded(self, row: int, data: bytes) -> np.ndarray:
        try:
            return self.predictor.decode(data)
        except ImageReadError as error:
            raise BadRequest(f"row {row}: {error.reason}") from None


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _looks_like_path(text: str) -> bool:
    """Base64 has no ``.``, ``\\`` or ``~``; a path to an image file has one of them."""
    return any(mark in text for mark in ".\\~")


def log_classifier(
    client: MlflowClient,
    run_id: str,
    checkpoint_dir: Path,
    example: np.ndarray,
    allow_paths: bool = False,
) -> str:
    """Log ``checkpoint_dir`` as the run's pyfunc model; returns its ``models:/m-...`` URI.

    ``allow_paths`` goes into the model config, where a loader or server can override it.
    """
    checkpoint = find_checkpoint(checkpoint_dir)
    mlflow.set_tracking_uri(client.tracking_uri)
    # The fluent API is the only way to log a model to a run: without an active run, Model.log
    # files the model under the default experiment even when given the run id. The context
    # ends the run FINISHED, which is what the end of a fit does next anyway. Its own clients
    # write to the store, so the whole of it is shielded like ``client``'s calls.
    shield = shielded(is_database_uri(client.tracking_uri))
    with (
        shield,
        _quiet_pyfunc_notices(),
        _without_requirement_self_check(),
        mlflow.start_run(run_id=run_id),
    ):
        logged = Model.log(  # what pyfunc.log_model calls, without the serving check
            artifact_path=None,
            flavor=_PYFUNC_WITHOUT_SERVING_CHECK,
            name="model",
            python_model=ImageClassifier(),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
            signature=model_signature(checkpoint.class_names),
            input_example=pd.DataFrame({"image": [encode_png_base64(example)]}),
            pip_requirements=provenance.pip_requirements(),
            code_paths=[str(Path(__file__).resolve().parents[1])],
            model_config={SERVE_PATHS: allow_paths},
            validate_serving_input=False,
        )
    return str(logged.model_uri)


def _save_pyfunc(**kwargs: Any) -> None:
    kwargs.pop("validate_serving_input")  # read by Model.log, refused by pyfunc.save_model
    mlflow.pyfunc.save_model(**kwargs)


# ``Model.log`` skips MLflow's serving check when given ``validate_serving_input=False``, but
# hands every keyword on to the flavor's ``save_model``. The check reloads the model and
# predicts the input example: ~0.3 s of every fit's end, and it only ever warns. The tests
# run the logged serving example instead (``test_logged_model_predicts_like_the_trainer``).
_PYFUNC_WITHOUT_SERVING_CHECK = types.SimpleNamespace(
    __name__="mlflow.pyfunc", save_model=_save_pyfunc
)


_SELF_CHECK = threading.Lock()  # models logged from two threads restore the same check


def _no_requirement_check(model_requirements: list[str]) -> None:
    """Stands in for MLflow's requirement check while a model is saved."""


@contextlib.contextmanager
def _without_requirement_self_check() -> Iterator[None]:
    """Saving a model, MLflow checks its pip requirements against the running environment and
    warns of mismatches. Ours are that environment's own versions
    (``provenance.pip_requirements``), so the check cannot find one; it reads every package's
    metadata, ~40 ms of every fit's end, where nothing overlaps it. Loading still checks."""
    with _SELF_CHECK:
        checked = mlflow_environment.warn_dependency_requirement_mismatches
        mlflow_environment.warn_dependency_requirement_mismatches = _no_requirement_check
        try:
            yield
        finally:
            mlflow_environment.warn_dependency_requirement_mismatches = checked


@contextlib.contextmanager
def _quiet_pyfunc_notices() -> Iterator[None]:
    """Hide MLflow's notices about two deliberate choices: the signature is given explicitly
    (not from type hints), and the model class is pickled by reference to this module."""
    with quiet("mlflow.pyfunc", logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
