"""Ctrl-C and SIGTERM never cut a store write short (which would leave its lock taken)."""

from __future__ import annotations

import gc
import os
import random
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from studies.storage import open_storage
from trainer import interrupts
from trainer.errors import Terminated
from trainer.tracking.store import ensure_experiment, open_client


@pytest.fixture(autouse=True)
def handlers() -> Iterator[None]:
    """This process's handlers, put back after the test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def signal_self(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)


def test_a_signal_inside_a_shielded_block_is_raised_when_the_block_ends() -> None:
    reached = []
    with pytest.raises(Terminated), interrupts.shielded():
        signal_self(signal.SIGTERM)
        with interrupts.shielded():  # nested: raised at the end of the outer block
            signal_self(signal.SIGINT)
            reached.append("inner")
        reached.append("outer")
    assert reached == ["inner", "outer"]


def test_an_inactive_shield_lets_the_signal_through() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.shielded(active=False):
        signal_self()
        threading.Event().wait(5)  # interrupted long before
        pytest.fail("not interrupted")


def test_another_threads_shield_does_not_hold_up_the_main_thread() -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with interrupts.shielded():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(10)
    try:
        with pytest.raises(KeyboardInterrupt):
            signal_self()
            threading.Event().wait(5)
    finally:
        release.set()
        thread.join()


def test_once_ignores_the_signals_after_the_first() -> None:
    interrupts.install(once=True)
    with pytest.raises(KeyboardInterrupt):
        signal_self()
        threading.Event().wait(5)
    signal_self(signal.SIGTERM)
    signal_self()
    assert not threading.Event().wait(0.2)  # still running: neither was raised


def mlflow_writes(tmp_path: Path) -> Callable[[], None]:
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = ensure_experiment(client, "interrupted")

    def write() -> None:
        run = client.create_run(experiment)
        client.set_tag(run.info.run_id, "k", "v")
        client.set_terminated(run.info.run_id)

    return write


def optuna_writes(tmp_path: Path) -> Callable[[], None]:
    storage = open_storage(f"sqlite:///{tmp_path / 'mlflow.db'}").storage
    study = storage.create_new_study([StudyDirection.MAXIMIZE], "interrupted")

    def write() -> None:
        trial = storage.create_new_trial(study)
        storage.set_trial_param(trial, "x", 0.5, FloatDistribution(0, 1))
        storage.set_trial_state_values(trial, TrialState.COMPLETE, [1.0])

    return write


def database_is_free(path: Path) -> bool:
    connection = sqlite3.connect(path, timeout=0.5)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked"
        return False
    finally:
        connection.close()


@pytest.mark.parametrize("store", [mlflow_writes, optuna_writes], ids=["mlflow", "optuna-rdb"])
def test_interrupts_at_random_moments_never_leave_the_database_locked(
    tmp_path: Path, store: Callable[[Path], Callable[[], None]], request: pytest.FixtureRequest
) -> None:
    """Unshielded, 25 of 200 such interrupts left MLflow's SQLite store locked by a transaction
    of this process's that nothing would end (and most left Optuna's): the runs and the trial
    could then not be ended."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    write, randomness = store(tmp_path), random.Random(0)
    locked = 0
    gc.disable()  # a transaction left open stays open, as it did in a study's process
    request.addfinalizer(gc.enable)
    for _ in range(100):
        timer = threading.Timer(randomness.uniform(0.001, 0.03), signal_self)
        try:
            timer.start()
            while True:
                write()
        except KeyboardInterrupt:
            timer.join()
        locked += not database_is_free(tmp_path / "mlflow.db")
    assert locked == 0
