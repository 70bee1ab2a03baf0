"""Bad configuration and unreachable services: one line, at once, naming what to change."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from trainer.errors import UserError
from trainer.fit import fit

from .conftest import DEMO_CONFIG, small_config
from .servers import background_server, free_port, mlflow_server_command
from .test_studies import study_file, trials


def test_backbone_that_rejects_the_image_size_is_named(digits_dir: Path, tmp_path: Path) -> None:
    config = small_config(digits_dir, tmp_path / "out", model={"backbone": "test_vit3"})
    with pytest.raises(UserError) as caught:
        fit(config)
    message = str(caught.value)
    assert message.startswith("model.backbone test_vit3 cannot take 16 px images (")
    assert "its default is 160" in message and "\n" not in message
    assert not (tmp_path / "out" / "splits").exists()  # refused before touching the data


def test_image_size_below_the_backbones_minimum(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    create = timm.create_model

    def with_minimum(*args: object, **kwargs: object) -> object:
        model = create(*args, **kwargs)  # type: ignore[arg-type]
        model.pretrained_cfg = {**model.pretrained_cfg, "min_input_size": (3, 32, 32)}
        return model

    monkeypatch.setattr(timm, "create_model", with_minimum)
    config = small_config(digits_dir, tmp_path / "out")
    with pytest.raises(
        UserError,
        match=re.escape(
            "train.image_size 16 is below model.backbone test_resnet's minimum of 32 px"
        ),
    ):
        fit(config)


def test_batch_larger_than_the_training_set_is_clamped_with_a_warning(
    digits_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = small_config(digits_dir, tmp_path / "out", train={"batch_size": 1000})
    with caplog.at_level(logging.WARNING):
        summary = fit(config)
    assert "train.batch_size 1000 exceeds the 32 training images; using 32" in caplog.text
    assert summary["cv/val_acc_mean"] >= 0


@pytest.mark.parametrize("value", ["0", "-32", "1.5", "big"])
def test_image_size_must_be_a_positive_int(value: str) -> None:
    from trainer.config import load_config

    with pytest.raises(UserError, match=re.escape("bad value for 'train.image_size'")):
        load_config(DEMO_CONFIG, [f"train.image_size={value}"])


def studies_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "studies", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("postgresql://optuna:secret@127.0.0.1:{port}/optuna", "cannot open study storage"),
        ("sqlite:////no/such/dir/optuna.db", "cannot open study storage"),
        ("mysql+nosuchdriver://u@h/db", "cannot open study storage"),
    ],
)
def test_unreachable_storage_is_one_line(
    digits_dir: Path, tmp_path: Path, storage: str, message: str
) -> None:
    url = storage.format(port=free_port())
    result = studies_cli("run", str(study_file(tmp_path, digits_dir)), "--storage", url)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert message in line and "secret" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tracking_server_down_fails_at_once(digits_dir: Path, tmp_path: Path) -> None:
    config = small_config(digits_dir, tmp_path / "out")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "fit", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": url},
    )
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: cannot reach the MLflow tracking server at {url} (")
    assert "tracking=false" in line and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60  # not MLflow's minutes of retries
    assert not list((tmp_path / "out").rglob("model.safetensors"))  # no work done untracked


@pytest.mark.slow
def test_tracking_server_restart_mid_study_loses_nothing(digits_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    command = mlflow_server_command(port, backend, tmp_path / "artifacts")
    path, journal = study_file(tmp_path, digits_dir, name="restart", n_trials=3), tmp_path / "j.log"
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = 3
    raw["pruner"] = {"type": "none"}
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    with background_server(command, f"{url}/health") as server:
        study = subprocess.Popen(
            [sys.executable, "-m", "studies", "run", str(path), "--storage", str(journal)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and study.poll() is None:
            done = trials(journal, "restart") if journal.exists() else []
            if any(t.state == TrialState.COMPLETE for t in done):
                break
            time.sleep(0.2)
        assert study.poll() is None, study.communicate()[1]
        os.killpg(server.pid, 15)  # the server goes away mid-study...
        server.wait(timeout=60)
    time.sleep(3)
    with background_server(command, f"{url}/health"):  # ...and comes back on the same port
        _, stderr = study.communicate(timeout=600)
        assert study.returncode == 0, stderr
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("restart")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        trial_runs = [r for r in runs if "optuna.trial" in r.data.tags]
        assert len(trial_runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
        for run in runs:
            if run.info.run_name.startswith("fold-"):
                history = client.get_metric_history(run.info.run_id, "val/acc")
                assert sorted({m.step for m in history}) == [0, 1, 2], run.info.run_name
    assert [t.state for t in trials(journal, "restart")] == [TrialState.COMPLETE] * 3
