"""MLflow tracking of fits: the one module of ``trainer`` that imports mlflow.

Run tree (the report, the studies and the registry rely on it)::

    <run>               params: every config key; tags: code, data, machine; metrics cv/*, test/*
      fold-0 ... fold-k train/*, val/*, lr, epoch/* at step=epoch; best/*; checkpoint, plots
      refit             train/* per epoch; test/*; holdout predictions and confusion matrix

Children are nested through the ``mlflow.parentRunId`` tag with explicit run ids, so nothing
depends on MLflow's thread-local "active run" (which does not cross processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.metrics import confusion_matrix

from trainer import plots, provenance
from trainer.callbacks import Callback, FitInfo, FoldInfo
from trainer.checkpoint import find_checkpoint
from trainer.config import Config, TrackingConfig, apply_overrides, config_from_dict, flatten
from trainer.dataset import printable
from trainer.errors import UserError
from trainer.images import decode_image_input, encode_png_base64, read_rgb
from trainer.remote import check_server
from trainer.runtime import select_device
from trainer.scan import SKIPPED_FILE

log = logging.getLogger(__name__)

EMBEDDED_STORE = Path("mlruns")  # relative to the working directory
PARENT_RUN_TAG = "mlflow.parentRunId"
MODEL_URI_TAG = "model_uri"  # the fit's logged model (models:/m-...)
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def tracking_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri``, else SQLite in ``./mlruns``.

    A tracking server is checked once per process: if nothing answers, this fails in one line
    at once rather than after MLflow's minutes of retries (which are kept for a server that
    goes away later, e.g. while it restarts).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        if uri.startswith(("http://", "https://")):
            check_server(uri)
        return uri
    store = EMBEDDED_STORE.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside a SQLite store) if missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=_artifact_root(client)))
    except MlflowException:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _artifact_root(client: MlflowClient) -> str | None:
    uri = client.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None  # a server or database decides where artifacts go
    return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()


def metric_key(name: str) -> str:
    """A metric or param key MLflow accepts (odd characters in class names become ``_``)."""
    return _KEY_CHARS.sub("_", name)


class MlflowTracker(Callback):
    """Logs a fit as a parent run with one child run per fold (and the refit).

    ``run_id`` attaches to an existing run (a study's trial run) instead of creating one; that
    run's owner then ends it. Errors of the ``killed_on`` types end runs KILLED, others FAILED.
    """

    def __init__(
        self,
        settings: TrackingConfig,
        experiment: str,
        run_id: str | None = None,
        killed_on: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
        reference_tags: dict[str, str] | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.settings = settings
        self.client = MlflowClient(tracking_uri(settings.uri))
        self.experiment_id = ensure_experiment(self.client, experiment)
        self.run_id = run_id
        self.owns_run = run_id is None
        self.killed_on = killed_on
        self.reference_tags = reference_tags
        self.extra_tags = extra_tags or {}  # e.g. mlflow.parentRunId to nest the fit's run
        self.child_id: str | None = None
        self.history: plots.History = {}
        self.info: FitInfo | None = None

    # -- hooks ---------------------------------------------------------------------------

    def on_fit_start(self, info: FitInfo) -> None:
        self.info = info
        tags = {**provenance.run_tags(info), **self.extra_tags}
        if self.run_id is None:
            name = tags.get("mlflow.runName", info.run_dir.name)
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            self.run_id = run.info.run_id
        else:
            self._log(self.run_id, tags=tags)
        params = [Param(metric_key(k), str(v)) for k, v in flatten(info.config.to_dict()).items()]
        for start in range(0, len(params), 100):
            self._log(self.run_id, params=params[start : start + 100])
        self._log_lineage(info)
        if self.reference_tags is not None:
            provenance.warn_if_different(self.reference_tags, tags)
        log.info("tracking to %s (run %s)", self.client.tracking_uri, self.run_id)

    def on_fold_start(self, fold: FoldInfo) -> None:
        tags = {
            PARENT_RUN_TAG: self.parent_id,
            "fold": fold.name,
            "n_train": str(fold.n_train),
            "n_eval": str(fold.n_eval),
        }
        run = self.client.create_run(self.experiment_id, run_name=fold.name, tags=tags)
        self.child_id = run.info.run_id
        self.history[fold.name] = []

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        self.history[fold.name].append(dict(metrics))
        # One synchronous batch per epoch (~20 ms): MLflow's asynchronous mode measured slower
        # here, its writer thread competing with training for two cores.
        self._log(self.active_child, metrics=_metrics(metrics, step=epoch))

    def on_checkpoint(self, fold: FoldInfo, epoch: int, directory: Path) -> None:
        if self.settings.log_checkpoints == "all":
            self.client.log_artifacts(
                self.active_child, str(directory), f"checkpoints/epoch-{epoch:03d}"
            )

    def on_fold_end(self, fold: FoldInfo, summary: dict[str, Any]) -> None:
        child = self.active_child
        scalars = {
            k: float(v)
            for k, v in summary.items()
            if k.startswith(("best/", "test/")) and isinstance(v, int | float)
        }
        scalars["epochs_trained"] = float(summary["epochs_trained"])
        self._log(child, metrics=_metrics(scalars, step=0))
        if self.settings.log_checkpoints != "none":
            checkpoint = Path(summary["checkpoint"])
            for path in (checkpoint, checkpoint.with_suffix(".json")):
                self.client.log_artifact(child, str(path), "checkpoint")
        self.client.log_artifact(child, summary["predictions"])
        if self.settings.plots:
            for path in self._confusion_plot(fold, Path(summary["predictions"])):
                self.client.log_artifact(child, str(path), "plots")
        self.client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED))
        self.child_id = None

    def on_fit_end(self, summary: dict[str, Any]) -> None:
        info = self._fit_info
        scalars = {k: float(v) for k, v in summary.items() if k.startswith("cv/")}
        refit = summary.get("refit", {})
        scalars.update(
            {
                k: float(v)
                for k, v in refit.items()
                if k.startswith("test/") and isinstance(v, int | float)
            }
        )
        for name, scores in refit.get("test/per_class", {}).items():
            scalars[f"test/precision/{name}"] = scores["precision"]
            scalars[f"test/recall/{name}"] = scores["recall"]
        self._log(self.parent_id, metrics=_metrics(scalars, step=0))
        self.client.log_artifact(self.parent_id, str(info.run_dir / "summary.json"))
        if self.settings.plots and self.history:
            for path in plots.learning_curves(self.history, info.run_dir / "plots"):
                self.client.log_artifact(self.parent_id, str(path), "plots")
        if self.settings.log_model:
            self._log_model(_model_checkpoint(summary), info)
        if self.owns_run:
            self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FINISHED))

    def on_fit_error(self, error: BaseException) -> None:
        status = "KILLED" if isinstance(error, self.killed_on) else "FAILED"
        message = f"{type(error).__name__}: {error}"[:5000]
        runs = [self.child_id] if self.child_id else []
        if self.owns_run and self.run_id:
            runs.append(self.run_id)
        for run_id in runs:
            try:
                self.client.set_tag(run_id, "error", message)
                self.client.set_terminated(run_id, status)
            except MlflowException as exc:  # keep the original error the one that surfaces
                log.warning("could not end run %s as %s: %s", run_id, status, exc)
        self.child_id = None

    # -- helpers -------------------------------------------------------------------------

    @property
    def parent_id(self) -> str:
        """The fit's run id (set once the fit started)."""
        if self.run_id is None:
            raise RuntimeError("the fit has not started")
        return self.run_id

    @property
    def active_child(self) -> str:
        """The run id of the fold being trained."""
        if self.child_id is None:
            raise RuntimeError("no fold is running")
        return self.child_id

    @property
    def _fit_info(self) -> FitInfo:
        if self.info is None:
            raise RuntimeError("the fit has not started")
        return self.info

    def _log(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: dict[str, str] | None = None,
    ) -> None:
        run_tags_ = [RunTag(k, v) for k, v in (tags or {}).items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=run_tags_)

    def _log_lineage(self, info: FitInfo) -> None:
        samples, splits = info.samples, info.splits
        split_names = {int(i): "test" for i in splits.test}
        frame = pd.DataFrame(
            {
                "path": [printable(samples.relative(i)) for i in range(len(samples))],
                "label": [samples.class_names[k] for k in samples.labels],
                "split": [split_names.get(i, "trainval") for i in range(len(samples))],
            }
        )
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": local
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame,
                source=str(samples.root),
                targets="label",
                name=samples.root.name,
                digest=info.data_digest[:36],
            )
        context = InputTag("mlflow.data.context", "training")
        self.client.log_inputs(
            self.parent_id, [DatasetInput(dataset._to_mlflow_entity(), [context])]
        )
        self.client.log_artifact(self.parent_id, str(splits.path), "splits")
        self.client.log_artifact(self.parent_id, str(info.run_dir / "config.yaml"))
        if info.skipped:
            self.client.log_artifact(self.parent_id, str(info.run_dir / SKIPPED_FILE), "data")

    def _confusion_plot(self, fold: FoldInfo, predictions: Path) -> list[Path]:
        names = list(self._fit_info.samples.class_names)
        frame = pd.read_csv(
            predictions, dtype=str, keep_default_na=False, usecols=["label", "predicted"]
        )
        matrix = confusion_matrix(frame["label"], frame["predicted"], labels=names)
        split = "holdout" if fold.index < 0 else "validation"
        title = f"{fold.name}: {split} confusion matrix"
        return plots.confusion_matrix_plot(
            matrix, names, title, fold.out_dir / "confusion_matrix", png=fold.index < 0
        )

    def _log_model(self, checkpoint_dir: Path, info: FitInfo) -> None:
        checkpoint = find_checkpoint(checkpoint_dir)
        example_index = int(info.splits.test[0]) if len(info.splits.test) else 0
        example = pd.DataFrame(
            {"image": [encode_png_base64(read_rgb(info.samples.paths[example_index]))]}
        )
        mlflow.set_tracking_uri(self.client.tracking_uri)
        # The fluent API is the only way to log a model to a run; the context ends the run
        # FINISHED, which is what the end of a fit does next anyway.
        with _quiet_pyfunc_notices(), mlflow.start_run(run_id=self.parent_id):
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=ImageClassifier(),
                artifacts={"checkpoint": str(checkpoint_dir)},
                signature=model_signature(checkpoint.class_names),
                input_example=example,
                pip_requirements=provenance.pip_requirements(),
                code_paths=[str(Path(__file__).resolve().parent)],
            )
        # MLflow 3 keeps logged models outside the run's artifacts: record where this one is.
        self.client.set_tag(self.parent_id, MODEL_URI_TAG, logged.model_uri)


def config_from_run(run_id: str, overrides: list[str]) -> tuple[Config, dict[str, str]]:
    """The config of a logged fit (with ``overrides``), ready to reproduce it, and its tags.

    The original's execution mode is pinned (``precision: auto`` measures again otherwise and
    may choose differently), and its split file is restored from the run if it is missing.
    """
    client = MlflowClient(tracking_uri())
    try:
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory() as scratch:
            logged = Path(client.download_artifacts(run_id, "config.yaml", scratch))
            raw = yaml.safe_load(logged.read_text())
    except (MlflowException, OSError) as exc:
        raise UserError(
            f"run {run_id} in {client.tracking_uri} is not a trainer fit with a logged config "
            "(use the parent run's id, not a fold's; set MLFLOW_TRACKING_URI to its store)"
        ) from exc
    tags = dict(run.data.tags)
    pinned = _pinned_execution(raw.get("runtime", {}), tags.get("device", ""))
    config = config_from_dict(apply_overrides(raw, [*pinned, *overrides]), source=f"run {run_id}")
    _restore_split_file(client, run_id, config, tags.get("data.split_file", ""))
    return config, tags


def _pinned_execution(runtime: dict[str, Any], device: str) -> list[str]:
    words = device.split()
    if len(words) < 2 or words[0] != select_device(runtime.get("device", "auto")).type:
        return []
    pins = []
    if runtime.get("precision", "auto") == "auto":
        pins.append(f"runtime.precision={words[1]}")
    if runtime.get("channels_last", "auto") == "auto":
        pins.append(f"runtime.channels_last={str('channels_last' in words).lower()}")
    return pins


def _restore_split_file(client: MlflowClient, run_id: str, config: Config, name: str) -> None:
    split_dir = config.data.split_dir or config.output.dir / "splits"
    if not name or (split_dir / name).exists():
        return
    split_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = client.download_artifacts(run_id, f"splits/{name}", scratch)
        except (MlflowException, OSError) as exc:
            raise UserError(f"run {run_id} has no split file artifact splits/{name}") from exc
        (split_dir / name).write_bytes(Path(local).read_bytes())
    log.info("restored split file %s from run %s", split_dir / name, run_id)


@contextlib.contextmanager
def _quiet_pyfunc_notices() -> Iterator[None]:
    """Hide MLflow's notices about two deliberate choices: the signature is given explicitly
    (not from type hints), and the model class is pickled by reference to this module."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _metrics(values: dict[str, float], step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(metric_key(k), float(v), now, step) for k, v in values.items()]


def _model_checkpoint(summary: dict[str, Any]) -> Path:
    if "refit" in summary:
        return Path(summary["refit"]["checkpoint"]).parent
    best = max(summary["folds"], key=lambda fold: fold["best/val_acc"])
    return Path(best["checkpoint"]).parent


# -- the logged model ------------------------------------------------------------------------


def model_signature(class_names: Sequence[str]) -> ModelSignature:
    """Input: column ``image`` (path or base64 image); output: label and class probabilities."""
    outputs = [
        ColSpec("string", "predicted"),
        *(ColSpec("double", f"prob_{c}") for c in class_names),
    ]
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", "image")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(list(outputs)))


class ImageClassifier(PythonModel):
    """A fitted checkpoint as an MLflow pyfunc model that takes raw images.

    ``predict`` takes a DataFrame with an ``image`` column of file paths or base64-encoded
    image files and returns ``predicted`` plus one ``prob_<class>`` column per class, after the
    same resize and normalisation as in training. ``classify`` also takes RGB arrays.
    """

    def load_context(self, context: Any) -> None:
        """Load the checkpoint logged with the model."""
        from trainer.predict import Predictor

        self.predictor = Predictor(find_checkpoint(Path(context.artifacts["checkpoint"])))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Classify the images of ``model_input["image"]``."""
        return self.classify([decode_image_input(item) for item in model_input["image"]])

    def classify(self, images: Sequence[Path | np.ndarray]) -> pd.DataFrame:
        """Labels and probabilities for file paths or RGB uint8 arrays."""
        probs = self.predictor.predict_proba(list(images))
        names = self.predictor.class_names
        frame = pd.DataFrame(probs.astype(np.float64), columns=[f"prob_{c}" for c in names])
        frame.insert(0, "predicted", [names[i] for i in probs.argmax(axis=1)])
        return frame


def load_logged_model(uri: str) -> ImageClassifier:
    """The classifier behind an MLflow model URI (``models:/NAME@champion``, ``runs:/ID/model``)."""
    mlflow.set_tracking_uri(tracking_uri())  # registry too: it follows the tracking URI
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"cannot load model {uri}: {first}") from exc
    classifier = model.unwrap_python_model()
    if not isinstance(classifier, ImageClassifier):
        raise UserError(f"{uri} is not an image classifier logged by trainer")
    return classifier
