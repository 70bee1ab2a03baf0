"""A study file is checked when it loads: every value its search space can produce must be a
valid trainer config, before any study or trial exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from studies.cli import main
from studies.config import load_study_config
from studies.pruners import MedianPruning
from studies.space import trial_config
from studies.storage import open_storage
from trainer.config import apply_overrides
from trainer.errors import UserError
from trainer.model.backbone import check_backbone

from .conftest import REPO
from .test_studies import study_file


def study_with(tmp_path: Path, digits_dir: Path, space: dict[str, Any], **train: Any) -> Path:
    """The unit study file with this search space and base ``train`` values."""
    path = study_file(tmp_path, digits_dir, search_space=space)
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"].update(train)
    path.write_text(yaml.safe_dump(raw))
    return path


def refusal(path: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_study_config(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_backbone_among_choices_gets_the_fit_hint(digits_dir: Path, tmp_path: Path) -> None:
    choices = ["test_resnet", "resnet81"]
    space = {"model.backbone": {"type": "categorical", "choices": choices}}
    message = refusal(study_with(tmp_path, digits_dir, space))
    with pytest.raises(UserError) as fit_error:
        check_backbone("resnet81")
    assert "did you mean" in str(fit_error.value)
    assert message.endswith(f"search_space 'model.backbone' = 'resnet81': {fit_error.value}")


@pytest.mark.parametrize(
    ("key", "spec", "value"),
    [
        ("train.image_size", {"type": "int", "low": 4, "high": 5}, "4"),
        ("train.lr", {"type": "float", "low": -1.0, "high": -0.5}, "-1.0"),
        ("train.epochs", {"type": "int", "low": 0, "high": 3}, "0"),
        ("train.epochs", {"type": "float", "low": 1.0, "high": 3.0}, "2.0"),
        ("train.image_size", {"type": "categorical", "choices": [32, 3]}, "3"),
    ],
)
def test_every_value_a_range_produces_is_a_valid_config(
    digits_dir: Path, tmp_path: Path, key: str, spec: dict[str, Any], value: str
) -> None:
    message = refusal(study_with(tmp_path, digits_dir, {key: spec}))
    assert f"search_space '{key}' = {value}" in message
    assert f"bad value for '{key}'" in message


def test_lr_low_end_at_the_base_floor_is_refused(digits_dir: Path, tmp_path: Path) -> None:
    space = {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    message = refusal(study_with(tmp_path, digits_dir, space, lr=1e-2, min_lr=1e-3))
    assert "search_space 'train.lr' = 0.001" in message
    assert "train.min_lr (0.001) must be below train.lr (0.001)" in message


def test_ends_of_several_ranges_are_checked_together(digits_dir: Path, tmp_path: Path) -> None:
    space = {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.min_lr": {"type": "float", "low": 0.0, "high": 1e-3},
    }
    message = refusal(study_with(tmp_path, digits_dir, space, lr=1e-2))
    assert "search_space values train.lr=0.0001, train.min_lr=0.001 together" in message


def test_backbone_that_cannot_take_the_smallest_size(digits_dir: Path, tmp_path: Path) -> None:
    space = {
        "model.backbone": {"type": "categorical", "choices": ["test_resnet", "test_vit3"]},
        "train.image_size": {"type": "int", "low": 16, "high": 32, "step": 16},
    }
    message = refusal(study_with(tmp_path, digits_dir, space))
    assert "study.yaml: model.backbone test_vit3 cannot take 16 px images (" in message


def test_step_with_log_is_refused_before_optuna_sees_it(digits_dir: Path, tmp_path: Path) -> None:
    space = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}}
    assert "`step` is not supported when `log` is true" in refusal(
        study_with(tmp_path, digits_dir, space)
    )


def test_bad_space_through_the_cli_is_one_line_and_no_study(
    digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {"train.lr": {"type": "float", "low": -1.0, "high": -0.5}}
    path, journal = study_with(tmp_path, digits_dir, space), tmp_path / "journal.log"
    assert main(["run", str(path), "--storage", str(journal)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "search_space 'train.lr' = -1.0" in line
    assert optuna.get_all_study_names(storage=open_storage(str(journal)).storage) == []


def test_shipped_demo_study_loads(tmp_path: Path) -> None:
    study, base = load_study_config(REPO / "studies" / "configs" / "demo.yaml")
    assert study.name == "digits-demo-study" and base.data.folds == 3
    # the pruning bench measures the demo's section as the default: it must be the default
    assert study.pruner == MedianPruning()


def test_trial_config_sets_values_and_tracks_in_the_study(digits_dir: Path, tmp_path: Path) -> None:
    _, base = load_study_config(study_file(tmp_path, digits_dir))
    config = trial_config(base, {"train.lr": 0.01, "model.backbone": "test_efficientnet"}, "s")
    assert (config.train.lr, config.model.backbone, config.experiment) == (
        0.01,
        "test_efficientnet",
        "s",
    )
    assert config.tracking.enabled and config.train.image_size == base.train.image_size


def test_set_into_a_value_keeps_its_message() -> None:
    with pytest.raises(UserError, match=re.escape("--set 'train.lr.x=1': 'lr' is a value")):
        apply_overrides({"train": {"lr": 1}}, ["train.lr.x=1"])


def test_an_invalid_base_is_one_line(digits_dir: Path, tmp_path: Path) -> None:
    space = {"train.lr": {"type": "float", "low": 1e-2, "high": 1e-1, "log": True}}
    message = refusal(study_with(tmp_path, digits_dir, space, lr=3e-4, min_lr=1e-3))
    assert "(base): bad value for 'train'" in message and "train.min_lr (0.001)" in message


@pytest.mark.parametrize("workers", [0, -2, "many", 1.5, True])
def test_bad_workers_in_the_study_file_are_one_line(
    digits_dir: Path, tmp_path: Path, workers: Any
) -> None:
    path = study_file(tmp_path, digits_dir, workers=workers)
    assert refusal(path) == (
        f"{path}: bad 'workers': takes a number of at least 1 or 'auto', got {workers!r}"
    )
