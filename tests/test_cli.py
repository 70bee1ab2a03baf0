"""The trainer command line: one-line errors, fit, predict and sample-data end to end."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.cli import main

from .conftest import DEMO_CONFIG


def trainer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "missing.yaml"], "config file not found: missing.yaml"),
        (["fit", str(DEMO_CONFIG), "--set", "train.lrr=1"], "unknown key 'train.lrr'"),
        (["fit", str(DEMO_CONFIG), "--set", "data.root=/no/such/folder"], "dataset not found"),
        (["fit", str(DEMO_CONFIG), "--set", "model.backbone=resnet181"], "did you mean resnet18"),
        (["predict", "--model", "/no/ckpt", "x.png"], "no checkpoint at /no/ckpt"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args: list[str], message: str) -> None:
    result = trainer(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = trainer("--debug", "fit", "missing.yaml")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_sample_data_fit_predict(tmp_path: Path) -> None:
    data = tmp_path / "digits"
    assert (
        main(["sample-data", str(data), "--classes", "3", "--per-class", "20", "--size", "16"]) == 0
    )
    assert sorted(p.name for p in data.iterdir()) == ["0", "1", "2"]
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["data"].update(root=str(data), folds=2)
    config["train"].update(epochs=1, image_size=16, batch_size=16)
    config["output"] = {"dir": str(tmp_path / "out")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", str(path), "--set", "runtime.progress=false"]) == 0
    [run_dir] = (tmp_path / "out" / "digits-demo").iterdir()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["root"] == str(data) and saved["runtime"]["progress"] is False
    out = tmp_path / "pred.csv"
    assert (
        main(["predict", "--model", str(run_dir / "refit"), str(data / "1"), "--out", str(out)])
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20
    assert list(rows[0]) == ["path", "predicted", "prob_0", "prob_1", "prob_2"]
    assert sum(float(rows[0][f"prob_{c}"]) for c in "012") == pytest.approx(1, abs=1e-4)


def test_worker_error_is_reduced_to_its_own_line() -> None:
    from trainer.cli import one_line

    wrapped = (
        "Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\ntrainer.images.ImageReadError: cannot decode '
        "image /d/a.png (corrupt, empty or not an image)\n"
    )
    assert one_line(wrapped) == "cannot decode image /d/a.png (corrupt, empty or not an image)"
    assert one_line("first\nsecond") == "first"
