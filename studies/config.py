"""A study file: a base trainer config, a search space over its keys, sampler and pruner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainer.config import Config, apply_overrides, config_from_dict, flatten
from trainer.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatRange(_Strict):
    """A float between low and high, log-uniform when ``log``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False  # sample log-uniformly (learning rates)
    step: float | None = None  # discretisation step (not with log)

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        _check_range(self.low, self.high, self.log)
        return self


class IntRange(_Strict):
    """An integer between low and high (inclusive) in steps of ``step``."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        _check_range(self.low, self.high, self.log)
        return self


class Categorical(_Strict):
    """One of ``choices``."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool] = Field(min_length=1)


Distribution = Annotated[FloatRange | IntRange | Categorical, Field(discriminator="type")]


class SamplerConfig(_Strict):
    """TPE sampler settings."""

    seed: int | None = 42  # seeds the sampler (trial parameters are reproducible per worker)
    n_startup_trials: int = Field(10, ge=0)  # random trials before TPE models the space


class PrunerConfig(_Strict):
    """Which Optuna pruner stops weak trials, and its settings (unused ones are ignored)."""

    type: Literal["median", "percentile", "successive_halving", "hyperband", "wilcoxon", "none"] = (
        "median"
    )
    n_startup_trials: int = Field(5, ge=0)  # median/percentile: trials before pruning starts
    n_warmup_steps: int = Field(0, ge=0)  # median/percentile: steps of a trial never pruned
    percentile: float = Field(25.0, gt=0, lt=100)  # percentile pruner
    min_resource: int | Literal["auto"] = "auto"  # successive halving / hyperband
    reduction_factor: int = Field(3, ge=2)  # successive halving / hyperband
    p_threshold: float = Field(0.1, gt=0, lt=1)  # wilcoxon
    n_startup_steps: int = Field(2, ge=0)  # wilcoxon: folds before it may prune


class StudyConfig(_Strict):
    """Everything ``studies run`` needs."""

    name: str = Field(min_length=1)  # Optuna study name and MLflow experiment name
    base: dict[str, Any]  # a trainer config (as in trainer fit), or {"file": path, "set": [...]}
    search_space: dict[str, Distribution] = Field(min_length=1)  # dotted config key -> range
    n_trials: int = Field(20, ge=1)  # total trials that complete or are pruned
    timeout: float | None = Field(None, gt=0)  # seconds after which no new trial starts
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    storage: str | None = None  # Optuna storage URL; default: journal file in mlruns/optuna/


def load_study_config(path: Path) -> tuple[StudyConfig, Config]:
    """Read and validate a study file; returns it with its validated base trainer config."""
    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        study = StudyConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise UserError(
            f"{path}: bad '{key}': {error['msg'].removeprefix('Value error, ')}"
        ) from exc
    base = _base_dict(study.base, path.parent)
    unknown = sorted(set(study.search_space) - set(flatten(base)) - _optional_keys(base))
    if unknown:
        raise UserError(
            f"{path}: search_space key(s) {', '.join(unknown)} are not trainer config keys"
        )
    return study, config_from_dict(base, source=f"{path} (base)")


def _base_dict(base: dict[str, Any], folder: Path) -> dict[str, Any]:
    if "file" not in base:
        return base
    file = Path(base["file"])
    file = file if file.is_absolute() else folder / file
    if not file.is_file():
        raise UserError(f"base config file not found: {file}")
    return apply_overrides(yaml.safe_load(file.read_text()) or {}, list(base.get("set", [])))


def _optional_keys(base: dict[str, Any]) -> set[str]:
    """Dotted keys the base may omit (they take their defaults)."""
    defaults = Config.model_validate({**base, "data": base.get("data") or {"root": "."}})
    return set(flatten(defaults.to_dict()))


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"empty or inverted range: low {low} must be below high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")
