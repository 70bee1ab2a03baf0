"""Shared fixtures: a small real dataset, the demo config shrunk to seconds on CPU, and a small
study file with a helper that runs it with chosen first trials."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from trainer.config import Config, config_from_dict
from trainer.data.sample_data import write_digits

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "trainer" / "configs" / "demo.yaml"


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite tracking store for tests that do not make their own."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def isolated_tracking(
    session_store: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Never write to the repository's mlruns/ or the user's cache from a test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", session_store)
    monkeypatch.setenv("TIMM_STUDIES_CACHE", str(tmp_path_factory.getbasetemp() / "image-cache"))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 digit classes x 24 images of 16 px, written by the real sample-data code."""
    root = tmp_path_factory.mktemp("digits")
    write_digits(root, classes=3, per_class=24, size=16)
    return root


def small_config(data_root: Path, out_dir: Path, **sections: dict[str, Any]) -> Config:
    """The demo config shrunk to a couple of seconds: 2 folds, 1 epoch, 16 px, fp32, no bars."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["data"].update(root=str(data_root), folds=2, cache_mb=64, num_workers=0)
    raw["train"].update(image_size=16, batch_size=16, epochs=1, refit=False)
    raw["runtime"] = {"precision": "fp32", "channels_last": False, "progress": False}
    raw["output"] = {"dir": str(out_dir)}
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return config_from_dict(raw)


@pytest.fixture
def config(digits_dir: Path, tmp_path: Path) -> Config:
    """A fresh small config writing into this test's temporary folder."""
    return small_config(digits_dir, tmp_path / "outputs")


def study_file(tmp_path: Path, digits_dir: Path, **changes: Any) -> Path:
    """A study of the digits in seconds (2 folds, 2 epochs, 16 px, test_resnet) searching
    ``train.lr``, written to ``tmp_path/study.yaml``; ``changes`` replace top-level keys."""
    study: dict[str, Any] = {
        "name": "unit-study",
        "n_trials": 4,
        "base": {
            "seed": 1,
            "data": {"root": str(digits_dir), "folds": 2, "num_workers": 0, "cache_mb": 64},
            "model": {"backbone": "test_resnet", "pretrained": False},
            "augment": {"hflip_p": 0.0},
            "train": {"image_size": 16, "batch_size": 8, "epochs": 2},
            "runtime": {"precision": "fp32", "channels_last": False, "progress": False},
            "output": {"dir": str(tmp_path / "out")},
            "tracking": {"log_model": False, "plots": False},
        },
        "search_space": {"train.lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}},
        "sampler": {"seed": 3, "n_startup_trials": 2},
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        "workers": 1,  # tests of several processes ask for them
    }
    study.update(changes)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def run_study_with_lrs(path: Path, journal: Path, lrs: Iterable[float]) -> None:
    """``studies run`` the study file at ``path`` in the journal storage ``journal``, its first
    trials enqueued with these ``train.lr`` values (a good lr, 1e-2, or a useless one, 1e-8)."""
    import optuna

    from studies.cli import main
    from studies.storage import open_storage

    name = yaml.safe_load(path.read_text())["name"]
    study = optuna.create_study(
        study_name=name, storage=open_storage(str(journal)).storage, direction="maximize"
    )
    for lr in lrs:
        study.enqueue_trial({"train.lr": lr})
    assert main(["run", str(path), "--storage", str(journal)]) == 0


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """An empty embedded MLflow store in ``tmp_path``, set as the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def in_processes_at_once(
    target: Callable[..., None], args: tuple[Any, ...], count: int, timeout: float = 300
) -> tuple[list[int | None], list[Any]]:
    """Run ``target(*args, barrier, results)`` in ``count`` new processes, which wait at
    ``barrier`` to act at the same moment; their exit codes, and what they put in ``results``."""
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(count), spawn.Queue()
    processes = [spawn.Process(target=target, args=(*args, barrier, results)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=timeout)
    found = []
    while not results.empty():
        found.append(results.get(timeout=5))
    return [process.exitcode for process in processes], found
