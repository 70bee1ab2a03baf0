"""Who runs a trial, whether that worker is still there, and why a failed trial failed.

Every RUNNING trial names its worker (``host:pid:start time``): the name is stored on the
trial while it is still WAITING, before the storage turns it RUNNING (see
``studies.reservations``). A RUNNING trial is *stale*, and is failed so the study can go on,
when

- its worker ran on this host and that process is gone (or is the process asking, which runs
  no trial while it checks);
- on a database storage, Optuna's heartbeats of its worker stopped for the grace period;
- it names no worker (a plain Optuna process, or an older version of this tool) and started
  more than the grace period ago.

Why a trial failed is kept in its ``fail_reason`` user attribute: ``error`` (the fit raised),
``interrupted`` (SIGINT or SIGTERM) or ``worker lost`` (found stale). Only errors count toward
the "N trials failed, stopping" limit: a study can be interrupted any number of times.
"""

from __future__ import annotations

import logging
import socket
import warnings
from datetime import datetime

import optuna
import psutil
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from studies.storage import GRACE_SECONDS, StorageHandle

log = logging.getLogger(__name__)

WORKER_ATTR = "worker"  # "host:pid:start time" of the process running a trial
RESERVED_ATTR = "reserved_by"  # worker that will run a WAITING trial
ADOPTED_ATTR = "adopted_by"  # worker that took over a WAITING trial (a retry, an orphan)
FAIL_REASON_ATTR = "fail_reason"
ERROR, INTERRUPTED, WORKER_LOST = "error", "interrupted", "worker lost"


def worker_id() -> str:
    """This process, identified well enough to tell later whether it is still alive."""
    process = psutil.Process()
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"


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


def failure_reason(trial: FrozenTrial) -> str:
    """Why a FAIL trial failed: ``error``, ``interrupted`` or ``worker lost``."""
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    if reason:
        return str(reason)
    error = str(trial.user_attrs.get("error", ""))  # trials recorded before fail_reason existed
    if error.startswith(("KeyboardInterrupt", "Terminated")):
        return INTERRUPTED
    return ERROR if error else WORKER_LOST  # Optuna's heartbeat check fails trials silently


def counts_as_failure(trial: FrozenTrial) -> bool:
    """A FAIL trial that counts toward the failure limit: the fit itself raised."""
    return trial.state == TrialState.FAIL and failure_reason(trial) == ERROR


def why_stale(trial: FrozenTrial, handle: StorageHandle, heartbeat_stale: set[int]) -> str | None:
    """Why the RUNNING ``trial`` has no live worker, or None while it may have one.

    ``heartbeat_stale``: trial ids whose heartbeats stopped (database storages).
    """
    worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
    if not worker:
        started = trial.datetime_start or datetime.now()
        age = (datetime.now() - started).total_seconds()
        if age > GRACE_SECONDS:
            return f"names no worker and started {age:.0f} s ago"
        return None
    if handle.heartbeat:
        return f"its worker {worker} stopped" if trial._trial_id in heartbeat_stale else None
    if worker == worker_id() or not worker_alive(worker):
        return f"its worker {worker} is gone"
    return None


def heartbeat_stale_ids(study: optuna.Study, handle: StorageHandle) -> set[int]:
    """Ids of the study's RUNNING trials whose heartbeats stopped (none without heartbeats)."""
    if not handle.heartbeat:
        return set()
    # Optuna has no public query for this; doctor needs it to report before repairing.
    return set(handle.storage._get_stale_trial_ids(study._study_id))  # type: ignore[attr-defined]


def fail_trial(storage: BaseStorage, trial: FrozenTrial, reason: str) -> bool:
    """Mark the trial FAIL with its reason; False when it had finished meanwhile."""
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def fail_stale_trials(study: optuna.Study, handle: StorageHandle) -> int:
    """Fail every stale RUNNING trial (database storages: Optuna also queues a retry of those
    whose heartbeats stopped). Returns how many this call failed itself."""
    if handle.heartbeat:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = why_stale(trial, handle, set())
        if why is not None and fail_trial(handle.storage, trial, WORKER_LOST):
            log.warning("trial %d failed: it was RUNNING but %s", trial.number, why)
            failed += 1
    return failed
