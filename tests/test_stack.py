"""The team topology without Docker: PostgreSQL, an MLflow server on it, three study workers.

PostgreSQL comes from the OS packages (`.ci/run` installs them when missing); the test creates
a cluster in a temporary folder on a free loopback port and removes it afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from .servers import background_server, free_port, mlflow_server_command
from .test_studies import study_file
from .test_tracking_processes import rest
from .test_workers import assert_one_study_run, start, worker_study

pytestmark = pytest.mark.slow
N_TRIALS = 5


def postgres_bin() -> Path:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found: apt-get install postgresql (.ci/run does)"
        )
    return Path(found).resolve().parent


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster with databases `mlflow` and `optuna`."""
    binaries, port = postgres_bin(), free_port()
    root = Path(tempfile.mkdtemp(prefix="pg-stack-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run(
        as_postgres([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
        **quiet,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run(
        as_postgres(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ]
        ),
        **quiet,
    )
    try:
        for name in ("mlflow", "optuna"):
            subprocess.run(
                as_postgres(
                    [
                        str(binaries / "createdb"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-U",
                        "postgres",
                        name,
                    ]
                ),
                **quiet,
            )
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on PostgreSQL with artifacts served from a temporary folder."""
    port, artifacts = free_port(), tmp_path_factory.mktemp("served-artifacts")
    command = mlflow_server_command(port, f"{postgres}/mlflow", artifacts)
    url = f"http://127.0.0.1:{port}"
    with background_server(command, f"{url}/health"):
        yield url


def test_three_workers_on_postgres_and_a_server(
    postgres: str, server: str, digits_dir: Path, tmp_path: Path
) -> None:
    path = study_file(
        tmp_path, digits_dir, name="stack", n_trials=N_TRIALS, pruner={"type": "none"}
    )
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 10
    path.write_text(yaml.safe_dump(raw))
    storage = f"{postgres}/optuna"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server,
        "STUDIES_HEARTBEAT_SECONDS": "1",
        "STUDIES_GRACE_SECONDS": "10",
    }
    command = [sys.executable, "-m", "studies", "run", str(path), "--storage", storage]

    def start_worker() -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    workers = [start_worker()]
    client = MlflowClient(server)
    _wait(
        lambda: client.get_experiment_by_name("stack") is not None,
        "the first worker to create the study",
    )
    workers += [start_worker() for _ in range(2)]
    victim = workers[1]
    _wait(lambda: _training(storage, victim.pid), "the second worker to train a trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for worker in (workers[0], workers[2]):
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr

    trials = optuna.load_study(study_name="stack", storage=storage).trials
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == N_TRIALS
    assert states.count(TrialState.FAIL) == 1  # the killed worker's trial...
    failed = next(t.number for t in trials if t.state == TrialState.FAIL)
    assert any(
        t.system_attrs.get("failed_trial") == failed and t.state == TrialState.COMPLETE
        for t in trials
    )  # ...retried
    experiment_id = rest(server, "experiments/get-by-name", experiment_name="stack")["experiment"][
        "experiment_id"
    ]
    runs = rest(server, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1000})[
        "runs"
    ]
    trial_tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
    numbers = sorted(int(t["optuna.trial"]) for t in trial_tags if "optuna.trial" in t)
    assert numbers == sorted(t.number for t in trials)  # one run per trial, every trial has one
    assert not [r for r in runs if r["info"]["status"] == "RUNNING"]

    report = subprocess.run(
        [sys.executable, "-m", "studies", "report", "stack", "--out", str(tmp_path / "stack.html")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    promote = subprocess.run(
        [sys.executable, "-m", "studies", "promote", "stack"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert promote.returncode == 0, promote.stderr
    assert client.get_model_version_by_alias("stack", "champion").version is not None


def test_separate_processes_on_postgres_never_repeat_parameters(
    postgres: str, digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    path = worker_study(tmp_path, digits_dir, "pg-separate", 6)
    storage = f"{postgres}/optuna"
    optuna.storages.RDBStorage(storage)  # both schemas made once, before the processes start
    MlflowClient(session_store).search_experiments()
    processes = [start(["run", str(path), "--storage", storage], session_store) for _ in range(2)]
    logs = []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
            logs.append(stderr)
    finally:
        for process in processes:
            process.kill()
    trials = optuna.load_study(study_name="pg-separate", storage=storage).trials
    lrs = [t.params["train.lr"] for t in trials]
    seen = [(t.number, t.state.name, t.user_attrs) for t in trials], logs  # shown if it fails
    assert len(set(lrs)) == len(lrs) == 6, seen  # before: both processes drew the same trials
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert_one_study_run(MlflowClient(session_store), "pg-separate")


def _training(storage: str, pid: int) -> bool:
    """A trial of worker ``pid`` is running and has its MLflow run."""
    try:
        study = optuna.load_study(study_name="stack", storage=storage)
    except KeyError:
        return False
    return any(
        t.state == TrialState.RUNNING
        and f":{pid}:" in str(t.user_attrs.get("worker", ""))
        and "mlflow_run_id" in t.user_attrs
        for t in study.trials
    )


def _wait(condition: object, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
