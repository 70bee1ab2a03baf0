"""How a worker gets and runs a trial: reserve it WAITING under its name, then claim it RUNNING.

Optuna's ``study.optimize`` pops the first WAITING trial (possibly another worker's), marks it
RUNNING and only then lets the objective write down who runs it: a worker killed in between
leaves a RUNNING trial that names nobody, which nobody can judge dead. Here the worker's name is
on the WAITING trial before the storage's atomic WAITING -> RUNNING transition, which a worker
applies to its own reservation only; so a RUNNING trial always names its worker. On database
storages its first heartbeat is also recorded before the claim, so Optuna's heartbeat check
covers a worker lost right after it. The trial then runs as ``optimize`` would run it: the
objective, heartbeats, and ``study.tell`` with the outcome.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from studies.storage import StorageHandle
from studies.workers import (
    ADOPTED_ATTR,
    ERROR,
    FAIL_REASON_ATTR,
    INTERRUPTED,
    RESERVED_ATTR,
    WORKER_ATTR,
    counts_as_failure,
    worker_alive,
    worker_id,
)
from trainer.errors import UserError

log = logging.getLogger(__name__)

ObjectiveFunction = Callable[[optuna.Trial], float]


def reserve_trial(study: optuna.Study, handle: StorageHandle, n_trials: int) -> int | None:
    """Reserve the next trial for this worker (its id), or None when the study has enough.

    The reservation is a WAITING trial naming this worker: a new one, or one no live worker
    holds (enqueued by hand, a retry of a dead worker's trial, an orphaned reservation).
    """
    me = worker_id()
    with handle.exclusive():
        trials = study.get_trials(deepcopy=False)
        failures = sum(counts_as_failure(t) for t in trials)
        if failures >= n_trials:
            raise UserError(f"{failures} trials failed; stopping (see the runs' error tags)")
        for trial in trials:
            if _adoptable(trial):
                for attr in (RESERVED_ATTR, ADOPTED_ATTR, WORKER_ATTR):
                    handle.storage.set_trial_user_attr(trial._trial_id, attr, me)
                return trial._trial_id
        if sum(_counted(t) for t in trials) >= n_trials:
            return None
        template = create_trial(
            state=TrialState.WAITING, user_attrs={RESERVED_ATTR: me, WORKER_ATTR: me}
        )
        study_id = handle.storage.get_study_id_from_name(study.study_name)
        return handle.storage.create_new_trial(study_id, template_trial=template)


def trials_left(study: optuna.Study, n_trials: int) -> int:
    """How many more trials the study needs for a total of ``n_trials`` (failed ones do not
    count), as ``reserve_trial`` counts them."""
    return n_trials - sum(_counted(t) for t in study.get_trials(deepcopy=False))


def _adoptable(trial: FrozenTrial) -> bool:
    """A WAITING trial no live worker has reserved. A heartbeat retry copies the dead trial's
    user attributes (its old reservation included), so for retries only adoption counts."""
    if trial.state != TrialState.WAITING:
        return False
    retry = "failed_trial" in trial.system_attrs
    owner = str(trial.user_attrs.get(ADOPTED_ATTR if retry else RESERVED_ATTR, ""))
    return not owner or owner == worker_id() or not worker_alive(owner)


def _counted(trial: FrozenTrial) -> bool:
    return trial.state != TrialState.FAIL


def claim(handle: StorageHandle, trial_id: int) -> FrozenTrial | None:
    """Turn this worker's reservation RUNNING; None when another worker got it first."""
    if handle.heartbeat:
        _record_heartbeat(handle, trial_id)
    try:
        if not handle.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
            return None
    except UpdateFinishedTrialError:
        return None
    me, trial = worker_id(), handle.storage.get_trial(trial_id)
    if trial.user_attrs.get(WORKER_ATTR) != me:
        # Two hosts adopted the same orphan at once: the winner of the claim names itself.
        handle.storage.set_trial_user_attr(trial_id, WORKER_ATTR, me)
    return trial


def run_trial(
    study: optuna.Study, handle: StorageHandle, trial_id: int, objective: ObjectiveFunction
) -> FrozenTrial | None:
    """Claim the reserved trial, run it and tell the study its outcome; None when another
    worker claimed it first. An interrupt (KeyboardInterrupt, which SIGTERM also raises) fails
    the trial as ``interrupted`` if this worker holds it, wherever it came, and is re-raised."""
    try:
        claimed = claim(handle, trial_id)
        if claimed is None:
            return None
        with _heartbeats(handle, trial_id):
            value, state = _evaluate(study, trial_id, objective)
    except KeyboardInterrupt:
        _fail_if_ours(study, handle, trial_id)
        raise
    if state == TrialState.FAIL:
        _fail(study, handle, trial_id, ERROR)
    else:
        study.tell(claimed.number, value, state=state, skip_if_finished=True)
    return handle.storage.get_trial(trial_id)


def _evaluate(
    study: optuna.Study, trial_id: int, objective: ObjectiveFunction
) -> tuple[float | None, TrialState | None]:
    """The objective's value, or the state it ended the trial in (PRUNED, FAIL)."""
    trial = optuna.Trial(study, trial_id)
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return None, TrialState.PRUNED
    except Exception as error:
        log.debug("trial %d raised", trial.number, exc_info=error)
        return None, TrialState.FAIL
    if math.isnan(value):
        return None, TrialState.FAIL
    return value, None


def _fail_if_ours(study: optuna.Study, handle: StorageHandle, trial_id: int) -> None:
    trial = handle.storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING and trial.user_attrs.get(WORKER_ATTR) == worker_id():
        _fail(study, handle, trial_id, INTERRUPTED)


def _fail(study: optuna.Study, handle: StorageHandle, trial_id: int, reason: str) -> None:
    try:
        handle.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
    except UpdateFinishedTrialError:
        return  # already failed by a worker that judged this one lost
    number = handle.storage.get_trial(trial_id).number
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def _record_heartbeat(handle: StorageHandle, trial_id: int) -> None:
    _rdb(handle).record_heartbeat(trial_id)


def _rdb(handle: StorageHandle) -> RDBStorage:
    assert isinstance(handle.storage, RDBStorage)  # the storages with heartbeats
    return handle.storage


@contextmanager
def _heartbeats(handle: StorageHandle, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every interval while it runs (database storages)."""
    if not handle.heartbeat:
        yield
        return
    interval = _rdb(handle).get_heartbeat_interval() or 60
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            _record_heartbeat(handle, trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
