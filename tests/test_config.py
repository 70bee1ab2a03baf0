from pathlib import Path

import pytest
import yaml

from trainer.config import apply_overrides, flatten, load_config
from trainer.errors import UserError

from .conftest import DEMO_CONFIG


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_config_loads_and_resolves_data_root() -> None:
    config = load_config(DEMO_CONFIG)
    assert config.model.backbone == "test_resnet"
    assert config.data.root.is_absolute()


def test_override_sets_typed_value() -> None:
    config = load_config(
        DEMO_CONFIG, ["train.lr=3e-4", "train.epochs=7", "model.freeze_backbone=true"]
    )
    assert config.train.lr == pytest.approx(3e-4)
    assert config.train.epochs == 7
    assert config.model.freeze_backbone is True


def test_unknown_key_names_key_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, {"data": {"root": "x"}, "train": {"lrr": 0.1}})
    with pytest.raises(
        UserError, match=r"unknown key 'train.lrr' \(allowed here: image_size,.*lr,"
    ):
        load_config(path)


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, {"data": {"root": "x"}, "train": {"optimizer": "adamax"}})
    with pytest.raises(UserError, match=r"'train.optimizer'.*'adam', 'adamw' or 'sgd'"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=0", "train.lr"),
        ("train.epochs=0", "train.epochs"),
        ("data.folds=0", "data.folds"),
        ("train.image_size=abc", "train.image_size"),
        ("data.test_size=1.5", "data.test_size"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(UserError, match=f"bad value for '{key}'"):
        load_config(DEMO_CONFIG, [override])


def test_missing_file_and_bad_override() -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config(Path("nope.yaml"))
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_config(DEMO_CONFIG, ["train.lr"])


def test_floor_must_be_below_peak() -> None:
    with pytest.raises(UserError, match="min_lr"):
        load_config(DEMO_CONFIG, ["train.min_lr=0.1", "train.lr=0.01"])


def test_overrides_do_not_mutate_and_flatten() -> None:
    raw = {"train": {"lr": 1}}
    result = apply_overrides(raw, ["train.lr=2", "model.backbone=x"])
    assert raw == {"train": {"lr": 1}}
    assert flatten(result) == {"train.lr": 2, "model.backbone": "x"}


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(UserError, match="bad value for 'seed'"):
        load_config(DEMO_CONFIG, ["seed=-1"])
