"""The tracker callback: a fit as a parent run with fold (and refit) runs.

Run tree (the report, the studies and the registry rely on it)::

    <run>               params: every config key; tags: code, data, machine; metrics cv/*, test/*;
                        galleries/: misclassified holdout images, likely label errors
      fold-0 ... fold-k epoch metrics at step=epoch; best/*; checkpoint, plots
      refit             epoch metrics less val/*; test/*; holdout predictions, confusion matrix

Epoch metrics keep the names they arrive with (``trainer.metrics``). Children are nested
through the ``mlflow.parentRunId`` tag with explicit run ids, so nothing depends on MLflow's
thread-local "active run" (which does not cross processes).

Runs are created on the training thread; parameters, metrics, artifacts, figures and the end
of each fold's run are written by a ``BackgroundWriter`` while training goes on, and all of it
before the fit ends (a failed write fails the fit; an interrupted fit waits for them).

A fold's epoch metrics are written in batches (``trainer.tracking.batching``): the last ones
with the fold's results, or before its run ends if the fit fails or is interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from trainer import plots, provenance
from trainer.callbacks import Callback, FitInfo, FoldInfo
from trainer.config import TrackingConfig, flatten
from trainer.data.images import read_rgb
from trainer.fold_results import fit_scalars, model_checkpoint_dir
from trainer.galleries import FOLDER as GALLERIES
from trainer.galleries import write_galleries
from trainer.tracking.batching import MAX_METRICS, MAX_PARAMS, EpochBatch, chunks, metrics_at
from trainer.tracking.lineage import log_lineage
from trainer.tracking.served import log_classifier
from trainer.tracking.store import (
    MODEL_URI_TAG,
    PARENT_RUN_TAG,
    ensure_experiment,
    metric_key,
    open_client,
    quiet_transfers,
    running_runs,
)
from trainer.tracking.system import SystemMetrics
from trainer.tracking.writer import BackgroundWriter

log = logging.getLogger(__name__)


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
        quiet_transfers()
        self.settings = settings
        self.client = open_client(settings.uri)
        self.experiment_id = ensure_experiment(self.client, experiment)
        self.run_id = run_id
        self.owns_run = run_id is None
        self.killed_on = killed_on
        self.reference_tags = reference_tags
        self.extra_tags = extra_tags or {}  # e.g. mlflow.parentRunId to nest the fit's run
        self.child_id: str | None = None
        self.epochs = EpochBatch(settings.metrics_seconds)  # the fold's unwritten epoch metrics
        self.unended: set[str] = set()  # fold runs whose queued end has not been written yet
        self.creating_run = False  # from create_run until its id is kept (then searched for)
        self.writer = BackgroundWriter(self.client.tracking_uri)
        self.system_metrics = SystemMetrics(settings, self.client.tracking_uri)
        self.history: plots.History = {}
        self.cv_folds: list[dict[str, Any]] = []  # summaries of the cross-validation's folds
        self.info: FitInfo | None = None

    # -- hooks ---------------------------------------------------------------------------

    def on_fit_start(self, info: FitInfo) -> None:
        self.info = info
        tags = {**provenance.run_tags(info), **self.extra_tags}
        later = {} if self.run_id is None else tags  # a given run's, with its parameters
        if self.run_id is None:
            name = tags.get("mlflow.runName", info.run_dir.name)
            self.creating_run = True
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            self.run_id = run.info.run_id
            self.creating_run = False
        params = [Param(metric_key(k), str(v)) for k, v in flatten(info.config.to_dict()).items()]
        run_id = self.run_id
        what = "the run's parameters and tags"
        self.writer.submit(what, lambda: self._log_params(run_id, params, later))
        lineage = "the dataset, split and config files"
        self.writer.submit(lineage, lambda: log_lineage(self.client, run_id, info))
        if self.reference_tags is not None:
            provenance.warn_if_different(self.reference_tags, tags)
        log.info("tracking to %s (run %s)", self.client.tracking_uri, self.run_id)

    def on_fold_start(self, fold: FoldInfo) -> None:
        if fold.index < 0 and self.cv_folds:  # the refit: the CV's figures are drawn meanwhile
            cv = {"folds": list(self.cv_folds)}, dict(self.history)
            self.writer.submit("the cross-validation's figures", lambda: self._figures(*cv))
        tags = {PARENT_RUN_TAG: self.parent_id, "fold": fold.name}
        tags |= {"n_train": str(fold.n_train), "n_eval": str(fold.n_eval)}
        self.creating_run = True
        run = self.client.create_run(self.experiment_id, run_name=fold.name, tags=tags)
        self.child_id = run.info.run_id
        self.creating_run = False
        self.history[fold.name] = []
        self.epochs.restart()
        self.system_metrics.start(self.child_id)

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        self.history[fold.name].append(dict(metrics))
        if batch := self.epochs.add(metrics, epoch):
            self._write_epochs(self.active_child, batch, f"{fold.name}'s epochs up to {epoch}")

    def on_checkpoint(self, fold: FoldInfo, epoch: int, directory: Path) -> None:
        if self.settings.log_checkpoints == "all":
            self.client.log_artifacts(
                self.active_child, str(directory), f"checkpoints/epoch-{epoch:03d}"
            )

    def on_fold_end(self, fold: FoldInfo, summary: dict[str, Any]) -> None:
        child, epochs = self.active_child, self.epochs.take()
        self.system_metrics.stop()  # flushes its samples before the run can end
        self.child_id = None
        self.unended.add(child)
        if fold.index >= 0:
            self.cv_folds.append(dict(summary))
        self.writer.submit(
            f"{fold.name}'s results and artifacts",
            lambda: self._finish_fold(child, fold, dict(summary), epochs),
        )

    def on_fit_end(self, summary: dict[str, Any]) -> None:
        info, parent = self._fit_info, self.parent_id
        history = {name: list(epochs) for name, epochs in self.history.items()}
        self.writer.submit(
            "the fit's results and figures",
            lambda: self._finish_fit(parent, info, summary, history),
        )
        model = None
        if self.settings.log_model:  # meanwhile, on this thread
            model = self._log_model(model_checkpoint_dir(summary), info)
        # linked to the model here; logged before it, MLflow would read each one back to link it
        scalars = metrics_at(fit_scalars(summary), step=0, model_id=model)
        self.writer.submit("the fit's metrics", lambda: self._log(parent, metrics=scalars))
        self.writer.flush()
        self.writer.close()
        if self.owns_run:
            self.client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))

    def on_fit_error(self, error: BaseException) -> None:
        self.system_metrics.stop()
        if self.child_id is not None and (batch := self.epochs.take()):
            self._write_epochs(self.child_id, batch, "the unfinished fold's last epochs")
        try:
            self.writer.drain()  # what was queued before the error is written, not lost
        except BaseException as again:  # a second signal while waiting: still end the runs
            log.warning("stopped waiting for queued tracking writes: %s", type(again).__name__)
        status = "KILLED" if isinstance(error, self.killed_on) else "FAILED"
        message = f"{type(error).__name__}: {error}"[:5000]
        runs = [self.child_id] if self.child_id else []
        runs += sorted(self.unended)
        if self.owns_run and self.run_id:
            runs.append(self.run_id)
        if self.creating_run:
            run_dir = self.info.run_dir if self.info and self.owns_run else None
            runs += running_runs(self.client, self.experiment_id, self.run_id, run_dir)
        for run_id in dict.fromkeys(runs):
            try:
                self.client.set_tag(run_id, "error", message)
                self.client.set_terminated(run_id, status)
            except MlflowException as exc:  # keep the original error the one that surfaces
                log.warning("could not end run %s as %s: %s", run_id, status, exc)
        self.child_id = None
        self.unended.clear()

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
        first, *rest = chunks(metrics, MAX_METRICS)
        self.client.log_batch(run_id, metrics=first, params=params, tags=run_tags_)
        for more in rest:
            self.client.log_batch(run_id, metrics=more)

    def _log_params(self, run_id: str, params: list[Param], tags: dict[str, str]) -> None:
        for index, piece in enumerate(chunks(params, MAX_PARAMS)):
            self._log(run_id, params=piece, tags=None if index else tags)

    def _write_epochs(self, run_id: str, batch: list[Metric], description: str) -> None:
        self.writer.submit(description, lambda: self._log(run_id, metrics=batch))

    def _finish_fold(
        self, child: str, fold: FoldInfo, summary: dict[str, Any], epochs: list[Metric]
    ) -> None:
        """A fold's unwritten epoch metrics, scalars, checkpoint, predictions and confusion
        matrix; then its run ends."""
        scalars = {
            k: float(v)
            for k, v in summary.items()
            if k.startswith(("best/", "test/")) and isinstance(v, int | float)
        }
        scalars["epochs_trained"] = float(summary["epochs_trained"])
        self._log(child, metrics=[*epochs, *metrics_at(scalars, step=0)])
        if self.settings.log_checkpoints != "none":
            checkpoint = Path(summary["checkpoint"])
            for path in (checkpoint, checkpoint.with_suffix(".json")):
                self.client.log_artifact(child, str(path), "checkpoint")
        self.client.log_artifact(child, summary["predictions"])
        if self.settings.plots:
            names = self._fit_info.samples.class_names
            for path in plots.fold_confusion_matrix(fold, Path(summary["predictions"]), names):
                self.client.log_artifact(child, str(path), "plots")
        self.client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED))
        self.unended.discard(child)

    def _finish_fit(
        self, parent: str, info: FitInfo, summary: dict[str, Any], history: Any
    ) -> None:
        """The fit's summary, and the figures not drawn when the refit started."""
        self.client.log_artifact(parent, str(info.run_dir / "summary.json"))
        if "refit" in summary and self.cv_folds:
            summary, history = {"refit": summary["refit"]}, {}
        self._figures(summary, history)

    def _figures(self, summary: dict[str, Any], history: plots.History) -> None:
        """Learning curves of ``history``; the galleries ``summary`` allows (misclassified
        holdout images, likely label errors)."""
        if not self.settings.plots:
            return
        parent, run_dir = self.parent_id, self._fit_info.run_dir
        if history:
            for path in plots.learning_curves(history, run_dir / "plots"):
                self.client.log_artifact(parent, str(path), "plots")
        for path in write_galleries(summary, self._fit_info.samples.root, run_dir / GALLERIES):
            self.client.log_artifact(parent, str(path), GALLERIES)

    def _log_model(self, checkpoint_dir: Path, info: FitInfo) -> str:
        example_index = int(info.splits.test[0]) if len(info.splits.test) else 0
        example = read_rgb(info.samples.paths[example_index])
        model_uri = log_classifier(
            self.client, self.parent_id, checkpoint_dir, example, self.settings.serve_paths
        )
        # MLflow 3 keeps logged models outside the run's artifacts: record where this one is.
        self.client.set_tag(self.parent_id, MODEL_URI_TAG, model_uri)
        return model_uri.removeprefix("models:/")
