"""Sample a trial's values from the search space and apply them to the base config."""

from __future__ import annotations

from typing import Any

import optuna

from studies.config import Categorical, Distribution, FloatRange, IntRange, config_with
from trainer.config import Config


def suggest(trial: optuna.Trial, space: dict[str, Distribution]) -> dict[str, Any]:
    """One value per search-space key, drawn through the trial's sampler."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, FloatRange):
            values[key] = trial.suggest_float(
                key, spec.low, spec.high, log=spec.log, step=spec.step
            )
        elif isinstance(spec, IntRange):
            values[key] = trial.suggest_int(key, spec.low, spec.high, step=spec.step, log=spec.log)
        elif isinstance(spec, Categorical):
            values[key] = trial.suggest_categorical(key, spec.choices)
    return values


def trial_config(base: Config, values: dict[str, Any], experiment: str) -> Config:
    """The base config with the trial's values set, tracked in the study's experiment."""
    study_keys = {"experiment": experiment, "tracking.enabled": True}
    return config_with(base, {**values, **study_keys}, source="trial config")
