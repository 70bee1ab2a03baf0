"""The tracker's background writer: nothing queued is lost, and a failed write fails the run."""

from __future__ import annotations

import errno
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from trainer.cli import EXIT_TERMINATED, EXIT_USER_ERROR
from trainer.cli import main as trainer_main
from trainer.metrics import TRAIN_NAMES
from trainer.tracking.writer import BackgroundWriter, TrackingWriteError

from .conftest import DEMO_CONFIG

SLOW_UPLOADS = Path(__file__).with_name("slow_uploads.py")


def fit_args(digits_dir: Path, out: Path, experiment: str, *extra: str) -> list[str]:
    settings = [
        f"data.root={digits_dir}",
        f"output.dir={out}",
        f"experiment={experiment}",
        "train.image_size=16",
        "runtime.progress=false",
        "tracking.log_model=false",
        *extra,
    ]
    return ["fit", str(DEMO_CONFIG), *[arg for s in settings for arg in ("--set", s)]]


def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id]))


def test_tasks_run_in_order_and_flush_waits_for_them() -> None:
    writer, done = BackgroundWriter("store"), list[int]()

    def task(number: int) -> None:
        time.sleep(0.005)
        done.append(number)

    for number in range(20):
        writer.submit(f"task {number}", functools.partial(task, number))
    writer.flush()
    assert done == list(range(20))


def test_a_failed_task_fails_flush_and_the_next_submit() -> None:
    writer = BackgroundWriter("sqlite:///somewhere.db")

    def upload() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit("fold-0's checkpoint", upload)
    with pytest.raises(TrackingWriteError, match=r"fold-0.s checkpoint .*somewhere\.db.*space"):
        writer.flush()
    with pytest.raises(TrackingWriteError, match="fold-0's checkpoint"):
        writer.submit("fold-1's metrics", lambda: None)


def test_drain_gives_up_on_a_hung_store_after_its_time_limit() -> None:
    writer, release = BackgroundWriter("store"), threading.Event()
    writer.submit("a hung upload", release.wait)
    writer.submit("the next upload", lambda: None)
    start = time.monotonic()
    lost = writer.drain(seconds=0.3)
    assert 0.3 <= time.monotonic() - start < 5
    assert [what.split(" (")[0] for what in lost] == ["a hung upload", "the next upload"]
    release.set()
    writer.flush()  # the thread went on: both finished after all


def test_an_upload_error_fails_the_fit_and_its_runs_with_one_line(
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    session_store: str,
) -> None:
    upload = MlflowClient.log_artifact

    def full_disk(self: MlflowClient, run_id: str, local_path: str, *rest: Any) -> Any:
        if "predictions" in Path(local_path).name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return upload(self, run_id, local_path, *rest)

    monkeypatch.setattr(MlflowClient, "log_artifact", full_disk)
    args = fit_args(digits_dir, tmp_path / "out", "upload-error", "data.folds=2", "train.epochs=2")
    code = trainer_main(args)
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "could not write fold-0's results" in line and "No space left on device" in line
    statuses = [run.info.status for run in runs_of(MlflowClient(session_store), "upload-error")]
    assert statuses and set(statuses) == {"FAILED"}


@pytest.mark.slow
def test_sigterm_at_a_random_moment_loses_nothing_the_tracker_accepted(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    events, marker = tmp_path / "events.jsonl", tmp_path / "a-fold-ended"
    args = fit_args(digits_dir, tmp_path / "out", "sigterm", "data.folds=3", "train.epochs=3")
    process = subprocess.Popen(
        [sys.executable, str(SLOW_UPLOADS), str(events), str(marker), "--", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": session_store},
    )
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate(timeout=30)[1]
    delay = random.uniform(0.0, 2.0)  # anywhere in the folds that follow, uploads queued
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == EXIT_TERMINATED, (delay, stderr)
    assert "Traceback" not in stderr and "not written" not in stderr, (delay, stderr)

    client = MlflowClient(session_store)
    runs = {run.info.run_name: run for run in runs_of(client, "sigterm")}
    assert "RUNNING" not in {run.info.status for run in runs.values()}, delay
    accepted = [json.loads(line) for line in events.read_text().splitlines()]
    for event in accepted:
        run = runs[event["fold"]]
        if event["event"] == "epoch":
            steps = {
                m.step for m in client.get_metric_history(run.info.run_id, TRAIN_NAMES["loss"])
            }
            assert event["epoch"] in steps, (delay, event)
        else:
            assert run.info.status == "FINISHED", (delay, event)
            files = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"checkpoint", "plots"} <= files, (delay, event, files)
            assert any("predictions" in path for path in files), (delay, files)
    ended = {event["fold"] for event in accepted if event["event"] == "fold"}
    assert {run.info.status for name, run in runs.items() if name not in ended} <= {"KILLED"}


def test_metric_batches_stay_within_mlflows_limit_per_call() -> None:
    from trainer.tracking.batching import MAX_METRICS, chunks, metrics_at

    many = metrics_at({f"m{i}": float(i) for i in range(2 * MAX_METRICS + 7)}, step=0)
    pieces = chunks(many, MAX_METRICS)
    assert [len(p) for p in pieces] == [MAX_METRICS, MAX_METRICS, 7]
    assert [m for p in pieces for m in p] == many
    assert chunks([], MAX_METRICS) == [[]]  # a call with only params or tags still happens once
