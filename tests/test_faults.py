"""Runtime faults: signals at any point, NaN loss, out of memory, a full disk, and the doctor."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from studies.cli import main as studies_main
from studies.config import load_study_config
from studies.objective import Objective
from studies.runner import RunSettings, open_study, prepare_resume, run_worker
from trainer.cli import main as trainer_main

from .conftest import DEMO_CONFIG
from .test_studies import study_file, trials

pytestmark = pytest.mark.slow
INJECT = Path(__file__).with_name("fault_injection.py")


def tiny_study(tmp_path: Path, digits_dir: Path, name: str, **base: Any) -> Path:
    path = study_file(tmp_path, digits_dir, name=name, n_trials=2, pruner={"type": "none"})
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 1
    for section, values in base.items():
        raw["base"].setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return path


def running_runs(client: MlflowClient, name: str) -> list[Any]:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return [r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "RUNNING"]


@pytest.mark.parametrize("phase", ["claimed", "loading", "epoch", "checkpoint"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_at_any_point_then_same_command_completes(
    digits_dir: Path, tmp_path: Path, session_store: str, phase: str, signum: int
) -> None:
    name = f"signal-{phase}-{signum}"
    path, journal = tiny_study(tmp_path, digits_dir, name), tmp_path / "journal.log"
    marker = tmp_path / "paused"
    env = {**os.environ, "MLFLOW_TRACKING_URI": session_store}
    args = ["run", str(path), "--storage", str(journal)]
    process = subprocess.Popen(
        [sys.executable, str(INJECT), phase, str(marker), "--", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first, stderr = pause_then_signal(process, marker, journal, name, signum)
    finally:  # a process that hangs must not hold the shared store while later tests run
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    if signum != signal.SIGKILL:
        assert "Traceback" not in stderr, stderr
    interrupted = next(t for t in trials(journal, name) if t.number == 1)
    expected = TrialState.RUNNING if signum == signal.SIGKILL else TrialState.FAIL
    assert interrupted.state == expected

    rerun = subprocess.run(
        [sys.executable, "-m", "studies", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert rerun.returncode == 0, rerun.stderr
    done = trials(journal, name)
    assert sum(t.state == TrialState.COMPLETE for t in done) == 2
    assert not [t for t in done if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert [t.value for t in done if t.number == 0] == [first.value]
    assert running_runs(MlflowClient(session_store), name) == []


def pause_then_signal(
    process: subprocess.Popen[str], marker: Path, journal: Path, name: str, signum: int
) -> tuple[optuna.trial.FrozenTrial, str]:
    """Wait for the injected pause, then signal: the first trial and the process's stderr."""
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate(timeout=30)[1] if process.poll() else "no pause"
    [first] = [t for t in trials(journal, name) if t.number == 0]
    assert first.state == TrialState.COMPLETE  # finished before the fault: must survive it
    process.send_signal(signum)
    return first, process.communicate(timeout=60)[1]


def run_in_process(path: Path, journal: Path) -> optuna.Study:
    study, base = load_study_config(path)
    study = study.model_copy(update={"storage": str(journal)})
    settings = RunSettings(study=study, base=base, n_trials=study.n_trials, timeout=None)
    handle_study, handle = open_study(settings)
    tracker = prepare_resume(handle_study, handle, {})
    tracker.mark_study("RUNNING")
    run_worker(settings)
    tracker.mark_study("FINISHED")
    return handle_study


@pytest.fixture
def trial_count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many trials this process has started (the fault hits the first one)."""
    calls = {"trial": 0}
    start = Objective.__call__

    def counting(self: Objective, trial: optuna.Trial) -> float:
        calls["trial"] += 1
        return start(self, trial)

    monkeypatch.setattr(Objective, "__call__", counting)
    return calls


def test_nan_loss_fails_the_trial_with_its_reason_and_the_study_goes_on(
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trial_count: dict[str, int],
) -> None:
    path = tiny_study(tmp_path, digits_dir, "nan-loss")
    original = torch.nn.CrossEntropyLoss.forward

    def poisoned(
        self: torch.nn.CrossEntropyLoss, logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        loss = original(self, logits, target)
        return loss * math.nan if trial_count["trial"] == 1 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    study = run_in_process(path, tmp_path / "journal.log")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    reason = study.trials[0].user_attrs["error"]
    assert reason.startswith("NonFiniteLossError") and "loss is nan" in reason
    run = MlflowClient().get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["optuna.state"] == "FAIL"
    assert "loss is nan" in run.data.tags["error"]


def test_out_of_memory_fails_the_trial_cleanly_and_the_study_goes_on(
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trial_count: dict[str, int],
) -> None:
    path = tiny_study(tmp_path, digits_dir, "oom")
    original = torch.nn.Module.__call__

    def allocator(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if trial_count["trial"] == 1 and isinstance(self, torch.nn.Conv2d) and self.training:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", allocator)
    study = run_in_process(path, tmp_path / "journal.log")
    assert [t.state for t in study.trials] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    reason = study.trials[0].user_attrs["error"]
    assert "out of memory" in reason and "train.batch_size" in reason
    assert running_runs(MlflowClient(), "oom") == []


def test_disk_full_while_writing_a_checkpoint(
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import trainer.model.checkpoint

    def full_disk(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        Path(filename).write_bytes(b"half a checkpoint")  # what a full disk leaves behind
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer.model.checkpoint, "save_file", full_disk)
    out = tmp_path / "out"
    code = trainer_main(
        [
            "fit",
            str(DEMO_CONFIG),
            "--set",
            f"data.root={digits_dir}",
            "--set",
            f"output.dir={out}",
            "--set",
            "data.folds=2",
            "--set",
            "train.epochs=1",
            "--set",
            "train.image_size=16",
            "--set",
            "runtime.progress=false",
            "--set",
            "experiment=disk-full",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "No space left on device" in line and "free space" in line
    assert not list(out.rglob("*.safetensors")) and not list(out.rglob("model.json"))
    assert not [p for p in out.rglob("*.tmp*")]
    client = MlflowClient()
    experiment = client.get_experiment_by_name("disk-full")
    assert experiment is not None
    statuses = {
        r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses and set(statuses.values()) == {"FAILED"}


def test_doctor_reports_then_fixes_disagreements(
    digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studies.storage import open_storage
    from studies.tracking import STUDY_RUN_ATTR, TRIAL_RUN_ATTR, StudyTracker
    from studies.workers import WORKER_ATTR

    path, journal = tiny_study(tmp_path, digits_dir, "doctor"), tmp_path / "journal.log"
    assert studies_main(["run", str(path), "--storage", str(journal)]) == 0
    handle = open_storage(str(journal))
    study = optuna.load_study(study_name="doctor", storage=handle.storage)
    client = MlflowClient()
    complete = study.trials[0]
    trial_run = complete.user_attrs[TRIAL_RUN_ATTR]
    client.update_run(trial_run, status="RUNNING")  # a run the worker never ended
    # A trial whose worker died: RUNNING in Optuna, its run RUNNING in MLflow.
    dead = optuna.trial.create_trial(state=TrialState.RUNNING, params={}, distributions={})
    study.add_trial(dead)
    orphan_trial = study.trials[-1]
    handle.storage.set_trial_user_attr(
        orphan_trial._trial_id, WORKER_ATTR, f"{os.uname().nodename}:999999999:0.0"
    )
    tracker = StudyTracker(study, handle)
    dead_run = tracker.start_trial(optuna.Trial(study, orphan_trial._trial_id))
    # A run naming a trial the study does not have, and a link to a run that is gone.
    stray = client.create_run(tracker.experiment_id, tags={"optuna.trial": "99"}).info.run_id
    deleted = study.trials[1].user_attrs[TRIAL_RUN_ATTR]
    client.delete_run(deleted)  # someone deleted it in the UI
    client.update_run(study.user_attrs[STUDY_RUN_ATTR], status="RUNNING")

    assert studies_main(["doctor", "doctor", "--storage", str(journal)]) == 1
    report = capsys.readouterr().out
    assert "study doctor: 3 trial(s) (2 complete, 1 running)" in report
    assert f"trial 2: RUNNING in Optuna but its worker {os.uname().nodename}:999999999" in report
    assert "trial 0: COMPLETE in Optuna but 1 of its MLflow run(s) RUNNING (--fix would" in report
    assert f"trial 1: links to run {deleted}, which is not in the store" in report
    assert f"run {stray}: names trial 99, which study doctor does not have" in report
    assert "study run: RUNNING although no trial is running" in report
    assert client.get_run(trial_run).info.status == "RUNNING"  # nothing changed without --fix

    assert studies_main(["doctor", "doctor", "--storage", str(journal), "--fix"]) == 1
    fixed = capsys.readouterr().out
    assert fixed.count("(fixed: ") == 4 and fixed.count("(to do: ") == 1
    assert client.get_run(trial_run).info.status == "FINISHED"
    assert client.get_run(dead_run).info.status == "FAILED"
    assert client.get_run(stray).info.status == "KILLED"
    assert client.get_run(study.user_attrs[STUDY_RUN_ATTR]).info.status == "KILLED"
    assert (
        optuna.load_study(study_name="doctor", storage=handle.storage).trials[2].state
        == TrialState.FAIL
    )
    assert running_runs(client, "doctor") == []

    assert studies_main(["doctor", "doctor", "--storage", str(journal), "--fix"]) == 1
    again = capsys.readouterr().out
    assert again.count("(fixed: ") == 0 and "trial 1: links to run" in again


def test_doctor_names_a_missing_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert studies_main(["doctor", "nope", "--storage", str(tmp_path / "j.log")]) == 2
    err = capsys.readouterr().err
    assert "error: no study 'nope' in" in err and "--storage" in err
