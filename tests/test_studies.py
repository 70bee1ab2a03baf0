"""Real small studies: pruning, MLflow links, workers, crash and resume, dashboard, bad files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from studies.cli import main
from studies.config import load_study_config
from studies.storage import open_storage
from trainer.errors import UserError

from .conftest import study_file
from .servers import background_server, free_port, venv_tool

pytestmark = pytest.mark.slow


def trials(journal: Path, name: str = "unit-study") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(str(journal)).storage).trials


def trial_runs(client: MlflowClient, name: str = "unit-study") -> list[Any]:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return [
        r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial" in r.data.tags
    ]


def test_bad_trials_are_pruned_early_and_runs_link_both_ways(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    path, journal = study_file(tmp_path, digits_dir), tmp_path / "journal.log"
    study = optuna.create_study(
        study_name="unit-study", storage=open_storage(str(journal)).storage, direction="maximize"
    )
    for lr in (1e-2, 1e-2, 1e-8, 1e-8):  # two good trials, then two made bad
        study.enqueue_trial({"train.lr": lr})
    assert main(["run", str(path), "--storage", str(journal)]) == 0
    done = trials(journal)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    client = MlflowClient(session_store)
    runs = {r.info.run_id: r for r in trial_runs(client)}
    assert len(runs) == 4
    for trial in done:
        run = runs[trial.user_attrs["mlflow_run_id"]]  # trial -> run
        assert run.data.tags["optuna.trial"] == str(trial.number)  # run -> trial
        assert run.data.tags["optuna.study"] == "unit-study" and run.data.params[
            "trial_number"
        ] == str(trial.number)
        if trial.state == TrialState.PRUNED:
            assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
            assert int(run.data.tags["optuna.pruned_step"]) < 9  # inside the first fold
            assert run.data.metrics["epochs_trained"] < 2 * 2  # fewer than folds x epochs
        else:
            assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
            assert run.data.metrics["epochs_trained"] == 4
        folds = [
            r
            for r in client.search_runs([run.info.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") == run.info.run_id
        ]
        assert folds and all(f.info.status != "RUNNING" for f in folds)
    reloaded = optuna.load_study(
        study_name="unit-study", storage=open_storage(str(journal)).storage
    )
    study_run = client.get_run(reloaded.user_attrs["mlflow_study_run_id"])
    assert study_run.info.status == "FINISHED" and study_run.data.tags["best.trial"] in {"0", "1"}


def test_auto_starts_no_more_workers_than_trials_left(
    digits_dir: Path, tmp_path: Path, session_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studies import cli, placement

    started: list[int] = []
    monkeypatch.setattr(placement, "worker_count", lambda requested: 4)  # a 4-core machine
    monkeypatch.setattr(cli, "_run_with_workers", lambda args, count, *rest: started.append(count))
    path, journal = study_file(tmp_path, digits_dir, name="auto-workers"), tmp_path / "j.log"
    raw = yaml.safe_load(path.read_text())
    del raw["workers"]  # neither the file nor the command line names them: auto
    path.write_text(yaml.safe_dump(raw))
    command = ["run", str(path), "--storage", str(journal)]
    assert main([*command, "--n-trials", "1"]) == 0  # one trial left: run here, no workers
    assert started == [] and len(trials(journal, "auto-workers")) == 1
    assert main([*command, "--n-trials", "3"]) == 0
    assert started == [2]  # two trials left: two workers, not four


def test_two_workers_finish_exactly_the_requested_trials(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    path, journal = study_file(tmp_path, digits_dir, name="two-workers"), tmp_path / "journal.log"
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 20  # trials long enough that both workers get some
    raw["pruner"] = {"type": "none"}
    path.write_text(yaml.safe_dump(raw))
    assert (
        main(["run", str(path), "--storage", str(journal), "--workers", "2", "--n-trials", "5"])
        == 0
    )
    done = trials(journal, "two-workers")
    assert len(done) == 5
    assert {t.state for t in done} <= {TrialState.COMPLETE, TrialState.PRUNED}
    workers = {t.user_attrs["worker"].split(":")[1] for t in done}
    assert len(workers) == 2 and str(os.getpid()) in workers  # this process is one of the two
    runs = trial_runs(MlflowClient(session_store), "two-workers")
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == [0, 1, 2, 3, 4]
    assert (
        main(["run", str(path), "--storage", str(journal), "--n-trials", "5"]) == 0
    )  # tops up: none more
    assert len(trials(journal, "two-workers")) == 5


def test_killed_worker_then_same_command_completes_the_study(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    base_changes = {"name": "killed", "n_trials": 3}
    path, journal = study_file(tmp_path, digits_dir, **base_changes), tmp_path / "journal.log"
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 40  # long enough to be killed mid-trial on a fast machine
    # every epoch's metrics written as it ends: they are this test's sign that a trial trains
    raw["base"].setdefault("tracking", {})["metrics_seconds"] = 0
    raw["pruner"] = {"type": "none"}
    path.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "studies", "run", str(path), "--storage", str(journal)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": session_store},
    )
    client = MlflowClient(session_store)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        running = [t for t in trials(journal, "killed")] if journal.exists() else []
        trial_1 = [t for t in running if t.number == 1 and t.state == TrialState.RUNNING]
        if trial_1 and "mlflow_run_id" in trial_1[0].user_attrs:
            folds = client.search_runs(
                [client.get_run(trial_1[0].user_attrs["mlflow_run_id"]).info.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{trial_1[0].user_attrs['mlflow_run_id']}'",
            )
            if folds and client.get_metric_history(folds[0].info.run_id, "val/acc"):
                break  # trial 1 is training: kill it now
    assert process.poll() is None, "the study ended before it could be killed mid-trial"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert any(t.state == TrialState.RUNNING for t in trials(journal, "killed"))
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": session_store},
    )
    assert result.returncode == 0, result.stderr
    done = trials(journal, "killed")
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done) == 3
    assert not [t for t in done if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    client = MlflowClient(session_store)
    experiment = client.get_experiment_by_name("killed")
    assert experiment is not None
    assert not [
        r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "RUNNING"
    ]


def test_optuna_dashboard_opens_the_study_storage(digits_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.log"
    optuna.create_study(study_name="visible", storage=open_storage(str(journal)).storage)
    port = free_port()
    command = [
        venv_tool("optuna-dashboard"),
        str(journal),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}/api/studies"
    with (
        background_server(command, url, timeout=60),
        urllib.request.urlopen(url, timeout=10) as response,
    ):
        body = json.loads(response.read())
    assert [s["study_name"] for s in body["study_summaries"]] == ["visible"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"search_space": {"train.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}},
            "empty or inverted range",
        ),
        (
            {"search_space": {"model.backbone": {"type": "categorical", "choices": []}}},
            "search_space.model.backbone",
        ),
        (
            {"search_space": {"train.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}}},
            "not trainer config keys",
        ),
        ({"search_space": {}}, "search_space"),
        ({"pruner": {"type": "asha"}}, "pruner.type"),
    ],
)
def test_bad_study_files_are_one_line(
    digits_dir: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = study_file(tmp_path, digits_dir, **change)
    with pytest.raises(UserError, match=message) as info:
        load_study_config(path)
    assert "\n" not in str(info.value)


def test_sigterm_ends_the_trial_failed_and_its_runs_killed(
    digits_dir: Path, tmp_path: Path, session_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, journal = (
        study_file(tmp_path, digits_dir, name="terminated", n_trials=2),
        tmp_path / "journal.log",
    )
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 50
    raw["base"].setdefault("tracking", {})["metrics_seconds"] = 0  # the sign that it trains
    path.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen(
        [sys.executable, "-m", "studies", "run", str(path), "--storage", str(journal)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": session_store},
    )
    client = MlflowClient(session_store)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        experiment = client.get_experiment_by_name("terminated")
        folds = (
            []
            if experiment is None
            else [
                r
                for r in client.search_runs([experiment.experiment_id])
                if r.info.run_name == "fold-0"
            ]
        )
        if folds and client.get_metric_history(folds[0].info.run_id, "val/acc"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    [trial] = trials(journal, "terminated")
    assert trial.state == TrialState.FAIL
    experiment = client.get_experiment_by_name("terminated")
    assert experiment is not None
    statuses = {
        r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses == {"study-terminated": "KILLED", "trial-0": "KILLED", "fold-0": "KILLED"}
    # That is the documented outcome of an interrupt: the doctor finds nothing wrong with it.
    assert main(["doctor", "terminated", "--storage", str(journal)]) == 0
    assert "no problems found" in capsys.readouterr().out
