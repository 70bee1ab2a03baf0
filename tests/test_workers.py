"""Several `studies run` processes on one study, and studies interrupted or killed repeatedly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

import studies.workers
from studies.cli import main as studies_main
from studies.storage import open_storage
from studies.workers import FAIL_REASON_ATTR, INTERRUPTED, WORKER_LOST
from trainer.tracking import PARENT_RUN_TAG

from .conftest import in_processes_at_once
from .test_studies import study_file, trials

pytestmark = pytest.mark.slow
INJECT = Path(__file__).with_name("fault_injection.py")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d [A-Z]+ ")


def worker_study(
    tmp_path: Path, digits_dir: Path, name: str, n_trials: int, epochs: int = 1
) -> Path:
    """A study of ``n_trials`` whose trials are all random draws of a continuous lr."""
    path = study_file(
        tmp_path,
        digits_dir,
        name=name,
        n_trials=n_trials,
        pruner={"type": "none"},
        sampler={"seed": 3, "n_startup_trials": 100},
    )
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = epochs
    path.write_text(yaml.safe_dump(raw))
    return path


Popen = subprocess.Popen[str]
STARTED: list[Popen] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Kill what a failed test left running (a study waiting forever, before the fix)."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def start(args: list[str], store: str, script: Path | None = None, **popen: Any) -> Popen:
    """``studies ARGS`` (or ``SCRIPT ARGS``) in a new process, stderr captured."""
    argv = [str(script)] if script else ["-m", "studies"]
    process = subprocess.Popen(
        [sys.executable, *argv, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
        **popen,
    )
    STARTED.append(process)
    return process


def training(
    journal: Path, name: str, client: MlflowClient, pid: int | None = None
) -> list[FrozenTrial]:
    """RUNNING trials (of process ``pid`` if given) whose fold runs have started."""
    found = []
    for trial in trials(journal, name) if journal.exists() else []:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if trial.state != TrialState.RUNNING or run_id is None:
            continue
        if pid is not None and f":{pid}:" not in str(trial.user_attrs.get("worker")):
            continue
        experiment = client.get_run(run_id).info.experiment_id
        parent = f"tags.`mlflow.parentRunId` = '{run_id}'"
        if client.search_runs([experiment], filter_string=parent):
            found.append(trial)
    return found


def wait_for(condition: Any, process: Popen, what: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.3)
    stderr = process.communicate(timeout=60)[1] if process.poll() is not None else ""
    raise AssertionError(f"no {what} (exit code {process.returncode}): {stderr[-3000:]}")


def running_runs(client: MlflowClient, name: str) -> list[Any]:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return [r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "RUNNING"]


def finished(done: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_separate_processes_on_one_journal_never_repeat_parameters(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    path, journal = worker_study(tmp_path, digits_dir, "separate", 9), tmp_path / "journal.log"
    MlflowClient(session_store).search_experiments()  # the store exists before they start
    command = ["run", str(path), "--storage", str(journal)]
    processes = [start(command, session_store) for _ in range(3)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    done = trials(journal, "separate")
    lrs = [t.params["train.lr"] for t in done]
    assert len(set(lrs)) == len(lrs)  # before: each process drew the same startup trials
    assert len(finished(done)) == 9 and len(done) == 9
    assert len({t.user_attrs["worker"] for t in done}) >= 2  # the processes shared the work
    assert_one_study_run(MlflowClient(session_store), "separate")


def assert_one_study_run(client: MlflowClient, name: str) -> None:
    """The study has one study run, under which every trial's run is nested."""
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    studies = [r.info.run_id for r in runs if r.data.tags.get("kind") == "study"]
    assert len(studies) == 1, studies  # before: processes starting together each made one
    trial_runs = [r for r in runs if "optuna.trial" in r.data.tags]
    assert {r.data.tags[PARENT_RUN_TAG] for r in trial_runs} <= set(studies)


def test_kill_right_after_a_trial_turns_running_is_found_and_replaced(
    digits_dir: Path, tmp_path: Path, session_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, journal = worker_study(tmp_path, digits_dir, "claimed", 2), tmp_path / "journal.log"
    marker = tmp_path / "paused"
    args = ["run", str(path), "--storage", str(journal)]
    process = start(["claimed", str(marker), "--", *args], session_store, script=INJECT)
    wait_for(marker.exists, process, "pause after the claim")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    [orphan] = [t for t in trials(journal, "claimed") if t.state == TrialState.RUNNING]
    assert studies_main(["doctor", "claimed", "--storage", str(journal)]) == 1
    report = capsys.readouterr().out
    assert f"trial {orphan.number}: RUNNING in Optuna but its worker" in report
    assert f":{process.pid}:" in orphan.user_attrs["worker"]  # named before it was RUNNING

    rerun = start(args, session_store)
    _, stderr = rerun.communicate(timeout=180)  # before the fix: waited on it forever
    assert rerun.returncode == 0, stderr
    done = trials(journal, "claimed")
    assert len(finished(done)) == 2
    lost = next(t for t in done if t.number == orphan.number)
    assert lost.state == TrialState.FAIL and lost.user_attrs[FAIL_REASON_ATTR] == WORKER_LOST
    assert running_runs(MlflowClient(session_store), "claimed") == []


def test_a_running_trial_naming_no_worker_is_stale_after_the_grace_period(
    digits_dir: Path,
    tmp_path: Path,
    session_store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, journal = worker_study(tmp_path, digits_dir, "nameless", 1), tmp_path / "journal.log"
    study = optuna.create_study(
        study_name="nameless", storage=open_storage(str(journal)).storage, direction="maximize"
    )
    study.ask()  # RUNNING, with no worker: a plain Optuna process, or one killed before naming it
    assert studies_main(["doctor", "nameless", "--storage", str(journal)]) == 0
    assert "no problems found" in capsys.readouterr().out  # it may still be starting
    monkeypatch.setattr(studies.workers, "GRACE_SECONDS", 0)
    assert studies_main(["doctor", "nameless", "--storage", str(journal)]) == 1
    assert "trial 0: RUNNING in Optuna but names no worker" in capsys.readouterr().out

    monkeypatch.setenv("STUDIES_GRACE_SECONDS", "1")
    run = start(["run", str(path), "--storage", str(journal)], session_store)
    _, stderr = run.communicate(timeout=180)  # before the fix: waited on it forever
    assert run.returncode == 0, stderr
    done = trials(journal, "nameless")
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.COMPLETE]
    assert done[0].user_attrs[FAIL_REASON_ATTR] == WORKER_LOST


def test_ctrl_c_of_three_workers_ends_every_trial_and_run(
    digits_dir: Path, tmp_path: Path, session_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = worker_study(tmp_path, digits_dir, "ctrl-c", 3, epochs=200)
    journal = tmp_path / "journal.log"
    args = ["run", str(path), "--storage", str(journal), "--workers", "3"]
    process = start(args, session_store, start_new_session=True)
    client = MlflowClient(session_store)
    wait_for(lambda: len(training(journal, "ctrl-c", client)) == 3, process, "3 trials training")
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if not LOG_LINE.match(line)] == ["interrupted"]
    done = trials(journal, "ctrl-c")
    assert [t.state for t in done] == [TrialState.FAIL] * 3
    assert {t.user_attrs[FAIL_REASON_ATTR] for t in done} == {INTERRUPTED}
    assert running_runs(client, "ctrl-c") == []
    # The documented outcome of an interrupt (FAIL trials, KILLED runs) is not a problem.
    assert studies_main(["doctor", "ctrl-c", "--storage", str(journal)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_signals_never_use_up_the_failure_limit(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    path = worker_study(tmp_path, digits_dir, "killed-often", 2, epochs=10)
    journal, client = tmp_path / "journal.log", MlflowClient(session_store)
    args = ["run", str(path), "--storage", str(journal)]
    for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
        process = start(args, session_store)
        mine = lambda pid=process.pid: training(journal, "killed-often", client, pid)  # noqa: E731
        wait_for(mine, process, "its trial training")
        process.send_signal(signum)
        process.communicate(timeout=60)
        assert process.returncode != 0
    rerun = start(args, session_store)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr  # before: "2 trials failed; stopping"
    done = trials(journal, "killed-often")
    assert len(finished(done)) == 2
    reasons = [t.user_attrs.get(FAIL_REASON_ATTR) for t in done if t.state == TrialState.FAIL]
    assert sorted(reasons) == [INTERRUPTED, INTERRUPTED, WORKER_LOST]
    assert running_runs(client, "killed-often") == []


def _open_study_tracker(journal: str, store: str, barrier: Any, run_ids: Any) -> None:
    """One process: open the study and its tracker at the barrier, as a worker starts, on a
    store that takes half a second to create a run (a server across a network)."""
    os.environ["MLFLOW_TRACKING_URI"] = store
    from studies.tracking import StudyTracker

    create_run = MlflowClient.create_run

    def slow_create_run(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return create_run(self, *args, **kwargs)

    MlflowClient.create_run = slow_create_run  # type: ignore[method-assign]
    handle = open_storage(journal)
    study = optuna.load_study(study_name="together", storage=handle.storage)
    barrier.wait(timeout=60)
    run_ids.put(StudyTracker(study, handle).study_run_id)


def test_workers_starting_together_share_one_study_run(tmp_path: Path, session_store: str) -> None:
    journal = str(tmp_path / "journal.log")
    optuna.create_study(study_name="together", storage=open_storage(journal).storage)
    MlflowClient(session_store).search_experiments()  # the store exists before they start
    exit_codes, run_ids = in_processes_at_once(_open_study_tracker, (journal, session_store), 3)
    assert exit_codes == [0, 0, 0]
    assert len(run_ids) == 3 and len(set(run_ids)) == 1
    assert_one_study_run(MlflowClient(session_store), "together")


SPACE = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3}}


def _record_search_spaces(
    journal: str, store: str, names: list[str], barrier: Any, errors: Any
) -> None:
    """One process: for each study, a ``studies run`` start recording its search space at the
    barrier."""
    os.environ["MLFLOW_TRACKING_URI"] = store
    from studies.tracking import StudyTracker

    handle = open_storage(journal)
    for name in names:
        tracker = StudyTracker(optuna.load_study(study_name=name, storage=handle.storage), handle)
        barrier.wait(timeout=60)
        try:
            tracker.record_search_space(SPACE)
        except Exception as error:
            errors.put(f"{type(error).__name__}: {error}"[:300])


def test_commands_starting_together_all_record_the_search_space(
    tmp_path: Path, session_store: str
) -> None:
    journal, names = str(tmp_path / "journal.log"), [f"space-{i}" for i in range(3)]
    for name in names:
        optuna.create_study(study_name=name, storage=open_storage(journal).storage)
    MlflowClient(session_store).search_experiments()  # the store exists before they start
    args = (journal, session_store, names)
    exit_codes, failures = in_processes_at_once(_record_search_spaces, args, 3)
    assert not failures  # before: set_tag broke the tags' unique key in all but one
    assert exit_codes == [0, 0, 0]
    client = MlflowClient(session_store)
    for name in names:
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        assert json.loads(run.data.tags["optuna.search_space"]) == SPACE
