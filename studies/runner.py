"""``studies run``: trials as tracked, cross-validated fits; resumable; several workers.

``n_trials`` is a total, not an increment: the same command tops the study up until that many
trials are COMPLETE, PRUNED, RUNNING or WAITING. Failed trials do not count (they are retried by
running more), but the study stops once ``n_trials`` have failed with an error (interrupted
trials and lost workers do not count, see ``studies.workers``). Trial creation is serialised
by a file lock among this machine's workers, so they finish exactly ``n_trials``; workers on
other machines sharing a database may each start one more in a race.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from studies.config import StudyConfig
from studies.objective import Objective
from studies.pruning import create_pruner
from studies.reservations import reserve_trial, run_trial
from studies.sampling import create_sampler
from studies.storage import StorageHandle, load_or_create_study, open_storage
from studies.tracking import StudyTracker
from studies.workers import fail_stale_trials, failure_reason
from trainer.config import Config

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often a finished worker checks on trials still running elsewhere


@dataclass(frozen=True)
class RunSettings:
    """One invocation of ``studies run`` after the command line is applied."""

    study: StudyConfig
    base: Config
    n_trials: int
    timeout: float | None


def open_study(settings: RunSettings) -> tuple[optuna.Study, StorageHandle]:
    """Open (or create) the study with its sampler (seeded per trial, see studies.sampling)."""
    handle = open_storage(settings.study.storage)
    sampler = create_sampler(settings.study.sampler.seed, settings.study.sampler.n_startup_trials)
    study = load_or_create_study(
        handle, settings.study.name, sampler, create_pruner(settings.study.pruner)
    )
    return study, handle


def prepare_resume(
    study: optuna.Study, handle: StorageHandle, search_space: dict[str, Any]
) -> StudyTracker:
    """Fail trials of dead workers and end their runs; returns the study's tracker."""
    tracker = StudyTracker(study, handle)
    tracker.record_search_space(search_space)
    tidy(study, handle, tracker)
    return tracker


def tidy(study: optuna.Study, handle: StorageHandle, tracker: StudyTracker) -> None:
    """Fail the stale trials (workers gone) and end the MLflow runs of trials not running."""
    failed = fail_stale_trials(study, handle)
    ended = tracker.reconcile()
    if failed or ended:
        log.info("failed %d trial(s) of lost workers, ended %d stale run(s)", failed, ended)


def run_worker(settings: RunSettings) -> None:
    """Run trials until the study holds ``n_trials`` (or the timeout passes)."""
    study, handle = open_study(settings)
    tracker = StudyTracker(study, handle)
    objective = Objective(settings.study, settings.base, tracker)
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    while deadline is None or time.monotonic() < deadline:
        fail_stale_trials(study, handle)
        trial_id = reserve_trial(study, handle, settings.n_trials)
        if trial_id is not None:
            trial = run_trial(study, handle, trial_id, objective)
            if trial is not None:  # None: another worker claimed it first
                _log_trial(study, trial)
                tracker.update_best()
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tracker.reconcile()  # end MLflow runs of trials that failed with their worker
            return
        # Enough trials, but some are still running elsewhere: stay until they end, so that a
        # lost worker's trial is found stale (above) and replaced.
        time.sleep(POLL_SECONDS)


def _log_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f"at step {step} ({trial.intermediate_values[step]:.4f})"
    try:
        best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = "no complete trial yet"
    if trial.state == TrialState.FAIL:
        value = f"({failure_reason(trial)}: {trial.user_attrs.get('error', '-')})"[:300]
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    log.info(
        "trial %d %s %s | %s | %s | %.1f s",
        trial.number,
        trial.state.name,
        value,
        params,
        best,
        seconds,
    )


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
