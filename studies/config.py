"""A study file: a base trainer config, a search space over its keys, sampler and pruner
(the pruner configs are in ``studies.pruners``)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from studies.pruners import MedianPruning, PrunerConfig
from trainer.config import Config, apply_overrides, config_from_dict, set_dotted
from trainer.errors import UserError, one_line
from trainer.model.backbone import check_backbone, check_input_size, create_probe

log = logging.getLogger(__name__)

# Each joint check validates one whole config (~0.2 ms); beyond this many, values are checked
# one key at a time only.
MAX_CORNERS = 1024


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
        self.distribution()  # Optuna's own checks: step > 0, no step with log
        return self

    def distribution(self) -> FloatDistribution:
        """What ``trial.suggest_float`` samples from (``high`` rounded down to a step)."""
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


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
        self.distribution()  # Optuna's own checks: step 1 with log
        return self

    def distribution(self) -> IntDistribution:
        """What ``trial.suggest_int`` samples from (``high`` rounded down to a step)."""
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


class Categorical(_Strict):
    """One of ``choices``."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool] = Field(min_length=1)


Distribution = Annotated[FloatRange | IntRange | Categorical, Field(discriminator="type")]


class SamplerConfig(_Strict):
    """TPE sampler settings."""

    seed: int | None = 42  # seeds each trial's draws with (seed, trial number); null: unseeded
    n_startup_trials: int = Field(10, ge=0)  # random trials before TPE models the space


class StudyConfig(_Strict):
    """Everything ``studies run`` needs."""

    name: str = Field(min_length=1)  # Optuna study name and MLflow experiment name
    base: dict[str, Any]  # a trainer config (as in trainer fit), or {"file": path, "set": [...]}
    search_space: dict[str, Distribution] = Field(min_length=1)  # dotted config key -> range
    n_trials: int = Field(20, ge=1)  # total trials that complete or are pruned
    timeout: float | None = Field(None, gt=0)  # seconds after which no new trial starts
    # Worker processes on this machine (--workers overrides): a number, or auto: one per GPU,
    # else one per core (at most 4, never more than the trials left); see studies.placement.
    workers: int | Literal["auto"] = "auto"
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = MedianPruning()  # see studies.pruners
    storage: str | None = None  # Optuna storage URL; default: journal file in mlruns/optuna/

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"takes a number of at least 1 or 'auto', got {value!r}")


def load_study_config(path: Path, check_models: bool = True) -> tuple[StudyConfig, Config]:
    """Read and validate a study file; returns it with its validated base trainer config.

    Every value the search space can produce is checked against the trainer's config first
    (see ``check_space``); ``check_models=False`` skips the backbones' forward passes, for a
    process whose parent already checked the same file.
    """
    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        study = StudyConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {one_line(str(exc))}") from exc
    except ValidationError as exc:
        raise UserError(f"{path}: {_describe(exc, raw)}") from exc
    base = _base_dict(study.base, path.parent)
    unknown = sorted(set(study.search_space) - _config_keys(Config))
    if unknown:
        raise UserError(
            f"{path}: search_space key(s) {', '.join(unknown)} are not trainer config keys"
        )
    config = config_from_dict(base, source=f"{path} (base)")
    check_space(study.search_space, config, where=str(path), check_models=check_models)
    return study, config


def config_with(base: Config, values: Mapping[str, Any], source: str) -> Config:
    """``base`` with each dotted key of ``values`` set, validated as a trainer config."""
    raw = base.to_dict()
    for key, value in values.items():
        try:
            set_dotted(raw, key, value)
        except ValueError as exc:
            raise UserError(f"{source}: {key}: {exc}") from None
    return config_from_dict(raw, source=source)


def check_space(
    space: Mapping[str, Distribution], base: Config, where: str, check_models: bool = True
) -> None:
    """Refuse, with one line, a search space that can produce a config the trainer refuses.

    Checks every categorical choice and both ends of every range (plus a fractional value of a
    float range), one key at a time; then the ends of all keys together (cross-key rules such
    as min_lr < lr); every backbone name; and, with ``check_models``, each backbone in one
    forward pass at the smallest image size.
    """
    ends = {key: _ends(spec) for key, spec in space.items()}
    for key, spec in space.items():
        for value in _probes(spec):
            config_with(base, {key: value}, source=f"{where}: search_space '{key}' = {value!r}")
    _check_corners(ends, base, where)
    searched = "model.backbone" in ends
    backbones = [str(b) for b in dict.fromkeys(ends.get("model.backbone", [base.model.backbone]))]
    for backbone in backbones:
        try:
            check_backbone(backbone)
        except UserError as exc:
            origin = f"search_space 'model.backbone' = {backbone!r}" if searched else "base"
            raise UserError(f"{where}: {origin}: {exc}") from None
    if check_models:
        smallest = min(ends.get("train.image_size", [base.train.image_size]))
        _check_input_sizes(backbones, int(smallest), where)


def _describe(exc: ValidationError, raw: Any) -> str:
    """The first error as ``bad 'KEY': MESSAGE``, KEY the study file's own dotted key; an
    unknown tag of a tagged union is reported at the union's ``type`` key."""
    error = exc.errors()[0]
    key = _file_key(error["loc"], raw)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key += "." + error["ctx"]["discriminator"].strip("'")
        tag = error["ctx"].get("tag")
        message = (
            "missing" if tag is None else f"{tag!r} is not one of {error['ctx']['expected_tags']}"
        )
    return f"bad '{key}': {message}"


def _file_key(loc: tuple[int | str, ...], raw: Any) -> str:
    """An error location as a dotted key of the file: the member name pydantic adds to the
    location of an error inside a tagged union (``search_space.train.lr.float.low``) is not a
    key of the file and is left out."""
    parts, node = [], raw
    for index, part in enumerate(loc):
        member = isinstance(node, dict) and part not in node
        if member and (index < len(loc) - 1 or node.get("type") == part):
            continue
        parts.append(str(part))
        node = node[part] if isinstance(node, dict | list) and not member else None  # type: ignore[index]
    return ".".join(parts)


def _base_dict(base: dict[str, Any], folder: Path) -> dict[str, Any]:
    if "file" not in base:
        return base
    file = Path(base["file"])
    file = file if file.is_absolute() else folder / file
    if not file.is_file():
        raise UserError(f"base config file not found: {file}")
    return apply_overrides(yaml.safe_load(file.read_text()) or {}, list(base.get("set", [])))


def _config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The dotted keys of every setting of ``model``, defaults included."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _config_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _ends(spec: Distribution) -> list[Any]:
    """Each choice of a categorical; the lowest and highest value a range can produce."""
    if isinstance(spec, Categorical):
        return list(spec.choices)
    distribution = spec.distribution()
    return [distribution.low, distribution.high]


def _probes(spec: Distribution) -> list[Any]:
    """The ends, and for a float range a fractional value it produces (an integer key given a
    float range fails on such values only)."""
    if not isinstance(spec, FloatRange):
        return _ends(spec)
    distribution = spec.distribution()
    low, high = distribution.low, distribution.high
    if distribution.step is not None:
        inner = low + distribution.step
        return [low, high] + ([inner] if inner < high else [])
    middle = (low + high) / 2
    return [low, high, math.nextafter(middle, high) if middle.is_integer() else middle]


def _check_corners(ends: Mapping[str, list[Any]], base: Config, where: str) -> None:
    """Every combination of the keys' ends together, when there are few enough."""
    if len(ends) < 2:
        return
    count = math.prod(len(values) for values in ends.values())
    if count > MAX_CORNERS:
        log.info("%s: %d combinations of range ends; each key was checked alone", where, count)
        return
    for combination in itertools.product(*ends.values()):
        values = dict(zip(ends, combination, strict=True))
        shown = ", ".join(f"{key}={value!r}" for key, value in values.items())
        config_with(base, values, source=f"{where}: search_space values {shown} together")


def _check_input_sizes(backbones: list[str], image_size: int, where: str) -> None:
    """A forward pass of each backbone (random weights) at the smallest image size, where
    feature maps vanish and minimums bite. The largest size is left to each trial's own check:
    its pass is what costs (resnet50 at 512 px: ~0.6 s on 2 CPU cores, against ~0.05 s at
    128 px and ~0.1-0.3 s to create the model)."""
    with torch.random.fork_rng(devices=[]):  # model creation must not move the caller's RNG
        for backbone in backbones:
            try:
                model = create_probe(backbone)
                check_input_size(model, image_size, backbone)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"empty or inverted range: low {low} must be below high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")
