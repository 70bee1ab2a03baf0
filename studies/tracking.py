"""The MLflow side of a study: a study run, one nested run per trial, links both ways.

optuna-integration's MLflowCallback is deprecated and flat (no nesting, pruned and failed
trials closed as FINISHED), so this bridge uses ``MlflowClient`` with explicit run ids:

    study run            tags optuna.study, optuna.storage; best.* tags and best_value metric
      trial-N            tags optuna.study, optuna.trial, optuna.state, optuna.storage;
                         param trial_number; user attr mlflow_run_id on the Optuna trial
        fold-0 … refit   logged by trainer.tracking.MlflowTracker attached to the trial run
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from studies.storage import StorageHandle
from studies.workers import INTERRUPTED, WORKER_ATTR, failure_reason
from trainer.tracking import (
    PARENT_RUN_TAG,
    ensure_experiment,
    metrics_at,
    open_client,
)

log = logging.getLogger(__name__)

STUDY_RUN_ATTR = "mlflow_study_run_id"
TRIAL_RUN_ATTR = "mlflow_run_id"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "KILLED": "KILLED"}


def run_status(trial: FrozenTrial) -> str:
    """The status a finished trial's runs end with: FINISHED when complete, KILLED when pruned
    or interrupted (Ctrl-C, SIGTERM), FAILED when the fit raised or the worker was lost."""
    if trial.state == TrialState.FAIL and failure_reason(trial) == INTERRUPTED:
        return "KILLED"
    return RUN_STATUS[trial.state.name]


class StudyTracker:
    """Creates and ends the MLflow runs of one study's trials."""

    def __init__(self, study: optuna.Study, handle: StorageHandle) -> None:
        self.study = study
        self.storage_url = handle.url
        self.client = open_client()
        self.experiment_id = ensure_experiment(self.client, study.study_name)
        with handle.exclusive():  # workers starting together find one study run, not each theirs
            self.study_run_id = self._study_run()

    def record_search_space(self, search_space: dict[str, Any]) -> None:
        """Tag the study run with the searched keys and their ranges (the report reads them)."""
        # log_batch, not set_tag: MLflow retries a batch's tags when another command writes the
        # same new tag at the same moment, where set_tag fails on the table's unique key.
        tag = RunTag("optuna.search_space", json.dumps(search_space))
        self.client.log_batch(self.study_run_id, tags=[tag])

    def _study_run(self) -> str:
        known = self.study.user_attrs.get(STUDY_RUN_ATTR)
        if known:
            try:
                self.client.get_run(known)
                return str(known)
            except MlflowException:
                log.warning(
                    "study run %s is not in %s; starting a new one", known, self.client.tracking_uri
                )
        tags = {
            "optuna.study": self.study.study_name,
            "optuna.storage": self.storage_url,
            "kind": "study",
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"study-{self.study.study_name}", tags=tags
        )
        self.study.set_user_attr(STUDY_RUN_ATTR, run.info.run_id)
        return str(run.info.run_id)

    def mark_study(self, status: str) -> None:
        """Set the study run's status (RUNNING while this invocation works, then its outcome)."""
        if status == "RUNNING":
            self.client.update_run(self.study_run_id, status="RUNNING")
        else:
            self.client.set_terminated(self.study_run_id, status)

    def start_trial(self, trial: optuna.Trial) -> str:
        """Create the trial's run under the study run and link both ways."""
        tags = {
            PARENT_RUN_TAG: self.study_run_id,
            "optuna.study": self.study.study_name,
            "optuna.trial": str(trial.number),
            "optuna.state": "RUNNING",
            "optuna.storage": self.storage_url,
            "optuna.worker": str(trial.user_attrs.get(WORKER_ATTR, "")),
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial.number}", tags=tags
        )
        run_id = str(run.info.run_id)
        self.client.log_batch(run_id, params=[Param("trial_number", str(trial.number))])
        trial.set_user_attr(TRIAL_RUN_ATTR, run_id)
        return run_id

    def end_trial(
        self, run_id: str, state: str, metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        """Record the trial's outcome and end its run (PRUNED and interrupted runs: KILLED)."""
        self.client.log_batch(
            run_id,
            metrics=metrics_at(metrics, step=0),
            tags=[
                RunTag("optuna.state", state if state != "KILLED" else "FAIL"),
                *(RunTag(k, v) for k, v in tags.items()),
            ],
        )
        self.client.set_terminated(run_id, RUN_STATUS[state])

    def update_best(self) -> None:
        """Copy the best trial so far onto the study run."""
        try:
            best = self.study.best_trial
        except ValueError:  # no complete trial yet
            return
        tags = [RunTag(f"best.{k}", str(v)) for k, v in best.params.items()]
        tags += [
            RunTag("best.trial", str(best.number)),
            RunTag("best.mlflow_run_id", str(best.user_attrs.get(TRIAL_RUN_ATTR, ""))),
        ]
        value = Metric("best_value", float(best.value or 0.0), int(time.time() * 1000), best.number)
        self.client.log_batch(self.study_run_id, metrics=[value], tags=tags)

    def reconcile(self) -> int:
        """End runs left RUNNING by workers that died: their trials are no longer running."""
        # Runs first, trials second: a run is created after its trial turns RUNNING, so every
        # run found here has a trial, and one whose trial finished meanwhile is re-checked.
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
        )
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        ended = 0
        for run in runs:
            number = run.data.tags.get("optuna.trial")
            trial = trials.get(int(number)) if number is not None else None
            if trial is None or trial.state == TrialState.RUNNING:
                continue  # not a trial run, a trial of another study, or still running
            if self.client.get_run(run.info.run_id).info.status != "RUNNING":
                continue  # ended by its worker between the two reads
            ended += self._end_stale(run.info.run_id, trial, runs)
        return ended

    def _end_stale(self, run_id: str, trial: FrozenTrial, runs: list[Any]) -> int:
        status = run_status(trial)
        children = [r.info.run_id for r in runs if r.data.tags.get(PARENT_RUN_TAG) == run_id]
        for stale in [*children, run_id]:
            self.client.set_tag(stale, "error", "worker died; ended when the study resumed")
            self.client.set_terminated(stale, status)
        self.client.set_tag(run_id, "optuna.state", trial.state.name)
        log.warning("ended run %s (%s) left RUNNING by a dead worker", run_id, status)
        return 1 + len(children)
