"""Tracking across processes: SIGTERM ends runs KILLED; a real MLflow server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from .conftest import in_processes_at_once, small_config
from .servers import background_server, free_port, mlflow_server_command

pytestmark = pytest.mark.slow


def write_config(path: Path, digits_dir: Path, out: Path, **sections: Any) -> Path:
    config = small_config(digits_dir, out, **sections)
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def trainer_process(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "fit", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_mid_fit_leaves_runs_killed(digits_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = write_config(tmp_path / "c.yaml", digits_dir, tmp_path / "out", train={"epochs": 500})
    process = trainer_process(config, {"MLFLOW_TRACKING_URI": uri})
    client = MlflowClient(uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        children = [
            r for r in client.search_runs(_experiment_ids(client)) if r.info.run_name == "fold-0"
        ]
        if children and client.get_metric_history(children[0].info.run_id, "val/acc"):
            break  # training is under way
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    runs = client.search_runs(_experiment_ids(client))
    assert {r.info.run_name for r in runs} >= {"fold-0"}
    assert {r.info.status for r in runs} == {"KILLED"}


def _experiment_ids(client: MlflowClient) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on a loopback port with its own SQLite store and artifact folder."""
    port = free_port()
    command = mlflow_server_command(
        port, f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts"
    )
    url = f"http://127.0.0.1:{port}"
    with background_server(command, f"{url}/health"):
        yield url


def rest(url: str, endpoint: str, body: dict[str, Any] | None = None, **query: str) -> Any:
    address = f"{url}/api/2.0/mlflow/{endpoint}"
    if query:
        address += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        address, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_fit_against_a_tracking_server_builds_the_same_tree(
    mlflow_server: str, digits_dir: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml", digits_dir, tmp_path / "out", train={"epochs": 2, "refit": True}
    )
    process = trainer_process(config, {"MLFLOW_TRACKING_URI": mlflow_server})
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    experiment = rest(mlflow_server, "experiments/get-by-name", experiment_name="digits-demo")
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = rest(
        mlflow_server, "runs/search", {"experiment_ids": [experiment_id], "max_results": 100}
    )["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [run for run, t in zip(runs, tags, strict=True) if "mlflow.parentRunId" not in t]
    assert len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    children = {
        run["info"]["run_name"]: run
        for run, t in zip(runs, tags, strict=True)
        if t.get("mlflow.parentRunId") == parent_id
    }
    assert set(children) == {"fold-0", "fold-1", "refit"}
    assert {run["info"]["status"] for run in runs} == {"FINISHED"}
    history = rest(
        mlflow_server,
        "metrics/get-history",
        run_id=children["fold-0"]["info"]["run_id"],
        metric_key="val/acc",
    )
    assert [m["step"] for m in history["metrics"]] == [0, 1]
    parent_metrics = {m["key"] for m in parents[0]["data"]["metrics"]}
    assert {"cv/val_acc_mean", "cv/val_acc_std", "test/acc"} <= parent_metrics
    fold_files = rest(
        mlflow_server,
        "artifacts/list",
        run_id=children["fold-0"]["info"]["run_id"],
        path="checkpoint",
    )
    assert {f["path"] for f in fold_files["files"]} == {
        "checkpoint/model.safetensors",
        "checkpoint/model.json",
    }
    assert any((tmp_path / "server-artifacts").rglob("model.safetensors"))  # stored by the server


ROUNDS = 3  # each a new experiment whose dataset both processes log at the same moment


def _log_the_same_dataset(uri: str, experiments: list[str], barrier: Any, errors: Any) -> None:
    """One process: in each experiment, a run that logs the shared dataset at the barrier."""
    import pandas as pd

    from trainer.tracking.explore import log_dataset

    client = MlflowClient(uri)
    frame = pd.DataFrame({"path": ["a/1.png", "b/2.png"], "label": ["a", "b"]})
    for experiment_id in experiments:
        run_id = client.create_run(experiment_id).info.run_id
        barrier.wait(timeout=60)
        try:
            log_dataset(client, run_id, frame, "d" * 36, Path("/data/digits"), "training", True)
        except Exception as error:
            errors.put(f"{type(error).__name__}: {error}"[:300])
        client.set_terminated(run_id)


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_processes_logging_the_same_new_dataset_at_once_all_link_it(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = (
        request.getfixturevalue("mlflow_server")
        if store == "server"
        else f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    client = MlflowClient(uri)
    experiments = [client.create_experiment(f"same-data-{i}") for i in range(ROUNDS)]
    exit_codes, failures = in_processes_at_once(_log_the_same_dataset, (uri, experiments), 2)
    assert not failures  # before: one of them broke the datasets table's unique key
    assert exit_codes == [0, 0]
    for experiment_id in experiments:
        runs = client.search_runs([experiment_id])
        assert [len(r.inputs.dataset_inputs) for r in runs] == [1, 1]
        assert len({r.inputs.dataset_inputs[0].dataset.digest for r in runs}) == 1


def _ensure_the_experiment(uri: str, name: str, barrier: Any, errors: Any) -> None:
    """One process: a fit's or a worker's start, finding the experiment at the barrier."""
    from trainer.tracking.store import ensure_experiment

    client = MlflowClient(uri)
    barrier.wait(timeout=60)
    try:
        ensure_experiment(client, name)
    except Exception as error:
        errors.put(f"{type(error).__name__}: {error}"[:300])


def test_processes_starting_in_an_experiment_made_elsewhere_all_start(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("made-in-the-ui")  # without the training kind tag
    exit_codes, failures = in_processes_at_once(_ensure_the_experiment, (uri, "made-in-the-ui"), 3)
    assert not failures  # before: all but one broke the experiment tags' unique key
    assert exit_codes == [0, 0, 0]
    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def _open_the_store(uri: str, barrier: Any, errors: Any) -> None:
    """One process: a worker's first look at the tracking store, at the barrier."""
    from trainer.tracking.store import open_client

    barrier.wait(timeout=60)
    try:
        open_client(uri).search_experiments()
    except Exception as error:
        errors.put(f"{type(error).__name__}: {error}"[:300])


def test_processes_opening_a_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    exit_codes, failures = in_processes_at_once(_open_the_store, (uri,), 3)
    assert not failures  # before: all but one failed migrating the new store's tables
    assert exit_codes == [0, 0, 0]
    assert MlflowClient(uri).search_experiments()  # the store works: its default experiment
