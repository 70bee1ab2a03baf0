"""``studies run``: trials as tracked, cross-validated fits; resumable; several workers.

``n_trials`` is a total, not an increment: the same command tops the study up until that many
trials are COMPLETE, PRUNED, RUNNING or WAITING. Failed trials do not count (they are retried by
running more), but the study stops once ``n_trials`` have failed. Trial creation is serialised
by a file lock among this machine's workers, so they finish exactly ``n_trials``; workers on
other machines sharing a database may each start one more in a race.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from studies.config import StudyConfig
from studies.objective import WORKER_ATTR, Objective, worker_id
from studies.pruning import create_pruner
from studies.storage import StorageHandle, load_or_create_study, open_storage
from studies.tracking import StudyTracker
from trainer.config import Config
from trainer.errors import UserError
from trainer.runtime import available_cores

log = logging.getLogger(__name__)

RESERVED_ATTR = "reserved_by"  # worker that will run a WAITING trial
ADOPTED_ATTR = "adopted_by"  # worker that took over a WAITING trial (a retry, an orphan)
POLL_SECONDS = 2.0  # how often a finished worker checks on trials still running elsewhere


@dataclass(frozen=True)
class RunSettings:
    """One invocation of ``studies run`` after the command line is applied."""

    study: StudyConfig
    base: Config
    n_trials: int
    timeout: float | None
    worker_index: int  # seeds the sampler differently per worker


def open_study(settings: RunSettings) -> tuple[optuna.Study, StorageHandle]:
    """Open (or create) the study with a sampler seeded for this worker."""
    handle = open_storage(settings.study.storage)
    seed = settings.study.sampler.seed
    sampler = optuna.samplers.TPESampler(
        seed=None if seed is None else seed + settings.worker_index,
        n_startup_trials=settings.study.sampler.n_startup_trials,
    )
    study = load_or_create_study(
        handle, settings.study.name, sampler, create_pruner(settings.study.pruner)
    )
    return study, handle


def prepare_resume(
    study: optuna.Study, handle: StorageHandle, search_space: dict[str, Any]
) -> StudyTracker:
    """Fail trials of dead local workers and end their runs; returns the study's tracker."""
    failed = fail_dead_local_trials(study, handle)
    tracker = StudyTracker(study, handle.url, search_space)
    ended = tracker.reconcile()
    if failed or ended:
        log.info("resume: failed %d trial(s) of dead workers, ended %d stale run(s)", failed, ended)
    return tracker


def run_worker(settings: RunSettings) -> None:
    """Run trials until the study holds ``n_trials`` (or the timeout passes)."""
    study, handle = open_study(settings)
    tracker = StudyTracker(study, handle.url)
    objective = Objective(settings.study, settings.base, tracker)
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    while deadline is None or time.monotonic() < deadline:
        if _reserve_trial(study, handle, settings.n_trials):
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[_log_trial])
            tracker.update_best()
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tracker.reconcile()  # end MLflow runs of trials that failed with their worker
            return
        # Enough trials, but some are still running elsewhere: stay until they end, so that a
        # dead worker's trial is detected (heartbeats, or its pid here) and retried.
        _fail_stale_trials(study, handle)
        time.sleep(POLL_SECONDS)


def _fail_stale_trials(study: optuna.Study, handle: StorageHandle) -> None:
    if handle.heartbeat:
        optuna.storages.fail_stale_trials(study)  # FAIL + a WAITING retry per stale trial
    else:
        fail_dead_local_trials(study, handle)


def _reserve_trial(study: optuna.Study, handle: StorageHandle, n_trials: int) -> bool:
    """Reserve the next trial for this worker; False when the study has enough.

    Every ``optimize(n_trials=1)`` call is preceded by one reservation (a WAITING trial tagged
    with this worker, enqueued or adopted), so workers never create more trials than wanted.
    """
    with _trial_lock(handle.local_lock):
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state for t in trials)
        if counts[TrialState.FAIL] >= n_trials:
            raise UserError(
                f"{counts[TrialState.FAIL]} trials failed; stopping (see the runs' error tags)"
            )
        for trial in trials:
            if _adoptable(trial):  # enqueued by hand, retried after a dead worker, or orphaned
                for attr in (RESERVED_ATTR, ADOPTED_ATTR):
                    handle.storage.set_trial_user_attr(trial._trial_id, attr, worker_id())
                return True
        if _counted(counts) >= n_trials:
            return False
        study.enqueue_trial({}, user_attrs={RESERVED_ATTR: worker_id()})
        return True


def _adoptable(trial: FrozenTrial) -> bool:
    """A WAITING trial no live worker has reserved. A heartbeat retry copies the dead trial's
    user attributes (its old reservation included), so for retries only adoption counts."""
    if trial.state != TrialState.WAITING:
        return False
    retry = "failed_trial" in trial.system_attrs
    owner = str(trial.user_attrs.get(ADOPTED_ATTR if retry else RESERVED_ATTR, ""))
    return not (owner and worker_alive(owner))


def _counted(counts: Counter[TrialState]) -> int:
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    return done + counts[TrialState.RUNNING] + counts[TrialState.WAITING]


@contextmanager
def _trial_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fail_dead_local_trials(study: optuna.Study, handle: StorageHandle) -> int:
    """Mark FAIL the RUNNING trials whose worker on this host is gone (journal storage has
    no heartbeats; on RDB storage Optuna's heartbeats also catch other hosts' workers)."""
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(str(trial.user_attrs.get(WORKER_ATTR, ""))):
            continue
        handle.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed += 1
    return failed


def worker_alive(worker: str) -> bool:
    """Whether the ``host:pid:start time`` process is alive (other hosts: assumed so)."""
    host, _, rest = worker.partition(":")
    if host != socket.gethostname():
        return True  # not ours to judge
    pid, _, started = rest.partition(":")
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.01
    except (psutil.NoSuchProcess, ValueError):
        return False


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


def cpu_threads_per_worker(workers: int) -> int:
    """Torch threads per worker process so that workers do not oversubscribe the cores."""
    return max(1, available_cores() // max(workers, 1))
