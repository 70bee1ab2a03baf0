"""trainer fit and studies run say once what explore found that skews the scores."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import studies.runner
from studies.cli import main as studies_main
from trainer import fit as fit_module
from trainer.config import Config, apply_overrides, config_from_dict
from trainer.explore.run import explore

from .conftest import study_file
from .explore_data import config_of, plant


def warned_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "trainer explore" in r.getMessage()
    ]


def small(config: Config) -> Config:
    """The explore fixture's config with a tiny model that skips the planted broken file."""
    overrides = [
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "train.image_size=16",
        "runtime.precision=fp32",
        "runtime.channels_last=false",
        "data.on_bad_image=skip",
    ]
    return config_from_dict(apply_overrides(config.model_dump(mode="json"), overrides))


def test_a_fit_warns_once_per_dataset_after_explore_found_leakage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    plant(root, tmp_path)
    config = small(config_of(root, tmp_path / "out", tracking=False))
    monkeypatch.setattr(fit_module, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        fit_module.prepare(config)
        assert warned_lines(caplog) == []  # never explored: nothing to say
        explore(config, workers=1)
        monkeypatch.setattr(fit_module, "_WARNED", set())
        fit_module.prepare(config)
        fit_module.prepare(config)  # a study's next trial in the same process
    (line,) = warned_lines(caplog)
    assert "holdout leakage" in line and "label conflicts" in line


def test_a_study_worker_process_leaves_the_warning_to_the_studies_run_process(
    tmp_path: Path,
    digits_dir: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "data"
    plant(root, tmp_path)
    config = small(config_of(root, tmp_path / "out", tracking=False))
    explore(config, workers=1)
    monkeypatch.setattr(fit_module, "_WARNED", set())
    monkeypatch.setattr(fit_module, "_DATA_WARNINGS", {"on": True})
    monkeypatch.setattr(studies.runner, "run_worker", lambda settings: fit_module.prepare(config))
    study = ["run", str(study_file(tmp_path, digits_dir)), "--storage", str(tmp_path / "journal")]
    capfd.readouterr()
    studies_main([*study, "--as-worker"])  # an extra worker of a study: its trials fit the data
    assert "trainer explore" not in "".join(capfd.readouterr())
    monkeypatch.setattr(fit_module, "_DATA_WARNINGS", {"on": True})
    studies_main(study)  # the studies run process that started it
    assert "holdout leakage" in "".join(capfd.readouterr())
