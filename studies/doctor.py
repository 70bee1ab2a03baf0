"""``studies doctor``: compare a study's Optuna trials with its MLflow runs, and repair.

Problems it finds (``--fix`` repairs the ones marked fixable):

- a trial RUNNING in Optuna whose worker is gone (a dead process on this host, a stale
  heartbeat on a database storage, or no worker recorded past the grace period): fixable, the
  trial becomes FAIL (``worker lost``, which does not count toward the failure limit);
- a trial run (or its fold runs) RUNNING in MLflow while the trial is finished: fixable, the
  runs are ended with the trial's outcome;
- a trial run whose status or ``optuna.state`` tag disagrees with the trial: fixable (a FAIL
  trial's runs end FAILED, or KILLED when it was interrupted: the outcome of Ctrl-C);
- the study run left RUNNING although no trial runs: fixable, it is ended KILLED;
- a finished trial without a run, a link to a run that is not in the store, or a trial run
  that names a trial the study does not have: reported only (nothing trustworthy to rebuild).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from studies.storage import StorageHandle
from studies.tracking import STUDY_RUN_ATTR, TRIAL_RUN_ATTR, run_status
from studies.workers import WORKER_LOST, fail_trial, heartbeat_stale_ids, why_stale
from trainer.tracking import PARENT_RUN_TAG

log = logging.getLogger(__name__)


@dataclass
class Finding:
    """One disagreement between Optuna and MLflow."""

    subject: str  # "trial 3", "run 1a2b…", "study run"
    problem: str
    repair: Callable[[], None] | None = None  # what --fix does; None: report only
    remedy: str = ""  # the repair in words, or what the user can do


class Doctor:
    """Diagnoses (and repairs) one study in one storage and tracking store."""

    def __init__(self, study: optuna.Study, handle: StorageHandle, client: MlflowClient) -> None:
        self.study, self.handle, self.client = study, handle, client
        self.trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        experiment = client.get_experiment_by_name(study.study_name)
        self.runs: list[Any] = []
        if experiment is not None:
            self.runs = list(client.search_runs([experiment.experiment_id], max_results=50_000))
        self.by_id = {run.info.run_id: run for run in self.runs}
        self.children: dict[str, list[Any]] = {}
        for run in self.runs:
            parent = run.data.tags.get(PARENT_RUN_TAG)
            if parent is not None:
                self.children.setdefault(parent, []).append(run)
        self.stale_ids = heartbeat_stale_ids(study, handle)

    def diagnose(self) -> list[Finding]:
        """Every problem found, trials first."""
        findings: list[Finding] = []
        for trial in self.trials.values():
            findings += self._check_trial(trial)
        findings += self._orphan_runs()
        findings += self._study_run()
        return findings

    def _check_trial(self, trial: FrozenTrial) -> list[Finding]:
        subject = f"trial {trial.number}"
        state = trial.state
        why = why_stale(trial, self.handle, self.stale_ids) if state == TrialState.RUNNING else None
        if why is not None:
            return [
                Finding(
                    subject,
                    f"RUNNING in Optuna but {why}",
                    lambda: self._fail_trial(trial),
                    "mark it FAIL (the next studies run replaces it) and end its runs",
                )
            ]
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR)
        if run_id is None:
            if state in (TrialState.RUNNING, TrialState.WAITING):
                return []
            return [Finding(subject, f"{state.name} but has no MLflow run", None, "none")]
        run = self.by_id.get(str(run_id))
        if run is None:
            return [
                Finding(
                    subject,
                    f"links to run {run_id}, which is not in the store",
                    None,
                    "check MLFLOW_TRACKING_URI points at the study's store",
                )
            ]
        return self._check_run(subject, trial, run)

    def _check_run(self, subject: str, trial: FrozenTrial, run: Any) -> list[Finding]:
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            return []
        expected = run_status(trial)
        tag = run.data.tags.get("optuna.state")
        stale = [r for r in self._family(run.info.run_id) if r.info.status == "RUNNING"]
        findings = []
        if stale:
            findings.append(
                Finding(
                    subject,
                    f"{trial.state.name} in Optuna but {len(stale)} of its MLflow run(s) RUNNING",
                    lambda: self._end_runs(stale, expected, trial.state.name),
                    f"end them {expected}",
                )
            )
        elif run.info.status != expected or tag != trial.state.name:
            findings.append(
                Finding(
                    subject,
                    f"{trial.state.name} in Optuna but its run is {run.info.status} "
                    f"(optuna.state tag {tag})",
                    lambda: self._end_runs([run], expected, trial.state.name),
                    f"set the run to {expected}",
                )
            )
        return findings

    def _orphan_runs(self) -> list[Finding]:
        findings = []
        for run in self.runs:
            number = run.data.tags.get("optuna.trial")
            if number is None or int(number) in self.trials:
                continue
            repair = None
            if run.info.status == "RUNNING":
                family = [r for r in self._family(run.info.run_id) if r.info.status == "RUNNING"]
                repair = lambda family=family: self._end_runs(family, "KILLED", "FAIL")  # noqa: E731
            findings.append(
                Finding(
                    f"run {run.info.run_id}",
                    f"names trial {number}, which study {self.study.study_name} does not have",
                    repair,
                    "end it KILLED" if repair else "delete it in the MLflow UI if unwanted",
                )
            )
        return findings

    def _study_run(self) -> list[Finding]:
        run = self.by_id.get(str(self.study.user_attrs.get(STUDY_RUN_ATTR, "")))
        busy = any(
            t.state == TrialState.RUNNING and why_stale(t, self.handle, self.stale_ids) is None
            for t in self.trials.values()
        )
        if run is None or run.info.status != "RUNNING" or busy:
            return []
        return [
            Finding(
                "study run",
                "RUNNING although no trial is running",
                lambda: self.client.set_terminated(run.info.run_id, "KILLED"),
                "end it KILLED",
            )
        ]

    def _family(self, run_id: str) -> list[Any]:
        """The run, its children (folds) and their children."""
        children = self.children.get(run_id, [])
        grandchildren = [r for child in children for r in self.children.get(child.info.run_id, [])]
        return [self.by_id[run_id], *children, *grandchildren]

    def _fail_trial(self, trial: FrozenTrial) -> None:
        if trial._trial_id in self.stale_ids:
            optuna.storages.fail_stale_trials(self.study)  # FAIL, and a retry if configured
        else:
            fail_trial(self.handle.storage, trial, WORKER_LOST)
        run = self.by_id.get(str(trial.user_attrs.get(TRIAL_RUN_ATTR, "")))
        if run is not None:
            running = [r for r in self._family(run.info.run_id) if r.info.status == "RUNNING"]
            self._end_runs(running, "FAILED", "FAIL")

    def _end_runs(self, runs: list[Any], status: str, state: str) -> None:
        for run in runs:
            if "optuna.trial" in run.data.tags:
                self.client.set_tag(run.info.run_id, "optuna.state", state)
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, "error", "ended by studies doctor --fix")
            self.client.set_terminated(run.info.run_id, status)


def examine(study: optuna.Study, handle: StorageHandle, client: MlflowClient, fix: bool) -> int:
    """Print the study's health; with ``fix``, repair what can be. Returns the exit code:
    0 when nothing is (left) wrong, 1 otherwise."""
    doctor = Doctor(study, handle, client)
    findings = doctor.diagnose()
    states = ", ".join(
        f"{count} {name.lower()}" for name, count in _state_counts(doctor.trials).items()
    )
    print(
        f"study {study.study_name}: {len(doctor.trials)} trial(s) ({states}), "
        f"{len(doctor.runs)} MLflow run(s)"
    )
    left = 0
    for finding in findings:
        fixed = fix and finding.repair is not None
        if fixed:
            assert finding.repair is not None
            finding.repair()
        left += not fixed
        action = "fixed: " if fixed else ("--fix would " if finding.repair else "to do: ")
        print(f"  {finding.subject}: {finding.problem} ({action}{finding.remedy})")
    if not findings:
        print("  no problems found")
    return 1 if left else 0


def recorded_storage(client: MlflowClient, name: str) -> str | None:
    """The storage URL the study run recorded, unless its password was redacted."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.kind = 'study'", max_results=1
    )
    url = runs[0].data.tags.get("optuna.storage") if runs else None
    return None if url is None or "***" in url else url


def _state_counts(trials: dict[int, FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials.values():
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
