"""One trial per GPU: worker counts and devices, with the device count faked on CPU."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from studies import cli, placement
from trainer.errors import UserError


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def devices(environments: list[dict[str, str]]) -> list[str | None]:
    return [env.get("CUDA_VISIBLE_DEVICES") for env in environments]


def test_auto_starts_one_worker_per_gpu_each_on_its_own(four_gpus: None) -> None:
    count = placement.worker_count("auto")
    assert count == 4
    assert devices(placement.worker_environments(count, {})) == ["0", "1", "2", "3"]


def test_more_workers_than_gpus_go_round_robin(four_gpus: None) -> None:
    assert devices(placement.worker_environments(6, {})) == ["0", "1", "2", "3", "0", "1"]


def test_visible_devices_are_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert placement.worker_count("auto") == 2
    assert devices(placement.worker_environments(3, {"X": "1"})) == ["5", "7", "5"]


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 2), (3, 3), (16, 4)])
def test_without_gpus_auto_is_one_single_thread_worker_per_core_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(placement, "available_cores", lambda: cores)
    assert placement.worker_count("auto") == workers
    environments = placement.worker_environments(workers, {})
    assert devices(environments) == [None] * workers
    assert {env["OMP_NUM_THREADS"] for env in environments} == {str(cores // workers)}


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_worker_counts_are_one_line(bad: str) -> None:
    with pytest.raises(UserError, match="--workers takes a number of at least 1 or 'auto'"):
        placement.worker_count(bad)


def test_the_parent_runs_trials_on_the_first_gpu_and_starts_a_worker_on_each_other(
    four_gpus: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from studies import runner

    started: list[dict[str, str]] = []
    events: list[str] = []

    class Worker:
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            assert "--as-worker" in command
            started.append(env)

        def wait(self) -> int:
            events.append("waited")
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", Worker)
    monkeypatch.setattr(placement, "use_worker_threads", lambda n: events.append("threads"))
    monkeypatch.setattr(runner, "run_worker", lambda settings: events.append("trials here"))
    args: Any = argparse.Namespace(study=tmp_path / "s.yaml", n_trials=None, timeout=None)
    settings: Any = argparse.Namespace(study=argparse.Namespace(name="s"))
    cli._run_with_workers(args, placement.worker_count("auto"), settings, str(tmp_path / "j.log"))
    assert devices(started) == ["1", "2", "3"]  # this process keeps "0", its cuda:0
    assert len({env["OMP_NUM_THREADS"] for env in started}) == 1
    # The others start first, this process trains meanwhile, then waits for them.
    assert events == ["threads", "trials here", "waited", "waited", "waited"]
