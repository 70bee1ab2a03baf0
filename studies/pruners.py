"""The pruners a study file can name: one small typed config per Optuna pruner.

Each class is the ``pruner:`` section of a study file for one ``type``; it holds only that
pruner's settings, builds the Optuna pruner (``create``) and says how a trial reports to it
(``per_fold``; see ``studies.pruning``). To add a pruner, write one class here and add it to
``PrunerConfig``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DEFAULT_TYPE = "median"  # the pruner of a study file whose pruner section names no type


class _Pruner(BaseModel):
    """What every pruner config provides."""

    model_config = ConfigDict(extra="forbid")

    # False: steps over the first fold's schedule, then the running mean over folds. True: one
    # report per fold, its own best accuracy, at step = fold index; a pruned trial then returns
    # the mean of the folds it trained (per-instance pruners such as Wilcoxon).
    per_fold: ClassVar[bool] = False

    @abstractmethod
    def create(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner with these settings."""


class MedianPruning(_Pruner):
    """Prune below the median of earlier trials at the same step.

    The default judges from the half of the first fold (``n_warmup_steps`` 1) once one trial
    has completed. The first quarter foretells the CV accuracy poorly, worst at the top: on the
    time-to-best studies the best configurations (high learning rates) stood no higher there
    than the rest, and judging it stopped most of them. One startup trial, not Optuna's five:
    every startup trial trains all its folds. bench/pruning_economy.py measures the choice
    against the alternatives (docs/benchmarks.md).
    """

    type: Literal["median"] = "median"
    n_startup_trials: int = Field(1, ge=0)  # completed trials before pruning starts
    n_warmup_steps: int = Field(1, ge=0)  # steps of a trial never pruned (1: the first quarter)
    n_min_trials: int = Field(1, ge=1)  # trials that reported a step before it judges
    # Whose values at a step make the median: "completed" trials (Optuna's MedianPruner) or
    # every trial that "reported" the step, pruned and running ones too (ReportedMedianPruner).
    median_of: Literal["completed", "reported"] = "completed"
    # During the warm-up steps, keep this top percentage of the completed trials at a step and
    # prune the rest (Optuna's PercentilePruner: 75 stops the bottom quarter; None: prune
    # nothing, as Optuna's warm-up). Hopeless trials stop at their first report, the median
    # judges from ``n_warmup_steps`` on.
    warmup_percentile: float | None = Field(None, gt=50, lt=100)

    @model_validator(mode="after")
    def _warmup_to_judge(self) -> MedianPruning:
        if self.warmup_percentile is not None and self.n_warmup_steps == 0:
            raise ValueError(
                "warmup_percentile applies to the warm-up steps: set n_warmup_steps >= 1 "
                "(e.g. 1: the median judges from the half of the first fold on)"
            )
        return self

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``MedianPruner`` or ``ReportedMedianPruner``; staged behind a
        ``PercentilePruner`` for the warm-up steps when ``warmup_percentile`` is set."""
        median = self._median()
        if self.warmup_percentile is None:
            return median
        early = optuna.pruners.PercentilePruner(
            self.warmup_percentile,
            n_startup_trials=self.n_startup_trials,
            n_min_trials=self.n_min_trials,
        )
        return StagedPruner(early, median, self.n_warmup_steps)

    def _median(self) -> optuna.pruners.BasePruner:
        if self.median_of == "reported":
            return ReportedMedianPruner(
                self.n_startup_trials, self.n_warmup_steps, self.n_min_trials
            )
        return optuna.pruners.MedianPruner(
            n_startup_trials=self.n_startup_trials,
            n_warmup_steps=self.n_warmup_steps,
            n_min_trials=self.n_min_trials,
        )


class StagedPruner(optuna.pruners.BasePruner):
    """``early`` judges a trial's steps below ``switch_step``, ``late`` the steps from it on.

    On the time-to-best studies the first quarter of a fold foretold the final accuracy poorly
    and the half well (the step table in docs/benchmarks.md): a lenient percentile stops only
    the hopeless trials at the first report, and the median judges once ranks mean something.
    """

    def __init__(
        self,
        early: optuna.pruners.BasePruner,
        late: optuna.pruners.BasePruner,
        switch_step: int,
    ) -> None:
        self.early = early
        self.late = late
        self.switch_step = switch_step

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """What ``early`` or ``late`` says at the trial's last step."""
        step = trial.last_step
        if step is None:
            return False
        return (self.early if step < self.switch_step else self.late).prune(study, trial)


class ReportedMedianPruner(optuna.pruners.BasePruner):
    """The median stopping rule against every trial that reported the step.

    Optuna's ``MedianPruner`` takes the median of *completed* trials only. In a long study the
    completed ones are the survivors of earlier cuts, so the bar climbs towards the best
    trials' early values and a trial that starts slowly but ends best is stopped. Here the
    median is over all trials that reached the step (complete, pruned or running), as a
    successive-halving rung counts them. Startup and warm-up are as in ``MedianPruner``: no
    pruning before ``n_startup_trials`` completed trials or at steps below ``n_warmup_steps``.
    """

    def __init__(self, n_startup_trials: int, n_warmup_steps: int, n_min_trials: int) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.n_min_trials = n_min_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial``'s best value so far is below the median at its last step."""
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        others = [
            t for t in study.get_trials(deepcopy=False, states=states) if t.number != trial.number
        ]
        if sum(t.state == TrialState.COMPLETE for t in others) < max(self.n_startup_trials, 1):
            return False
        values = [t.intermediate_values[step] for t in others if step in t.intermediate_values]
        if len(values) < self.n_min_trials:
            return False
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        own = sign * np.array(list(trial.intermediate_values.values()), dtype=float)
        if np.isnan(own).all():
            return True  # only NaN so far, as MedianPruner
        return bool(np.nanmax(own) < sign * float(np.nanmedian(values)))


class PercentilePruning(_Pruner):
    """Keep the top ``percentile`` % of earlier trials at the same step, prune the rest
    (Optuna's ``PercentilePruner``: 25 keeps the best quarter; 50 is the median rule)."""

    type: Literal["percentile"] = "percentile"
    percentile: float = Field(25.0, gt=0, lt=100)
    n_startup_trials: int = Field(5, ge=0)  # trials before pruning starts
    n_warmup_steps: int = Field(0, ge=0)  # steps of a trial never pruned
    n_min_trials: int = Field(1, ge=1)  # completed trials that reported a step before it judges

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``PercentilePruner``."""
        return optuna.pruners.PercentilePruner(
            self.percentile,
            n_startup_trials=self.n_startup_trials,
            n_warmup_steps=self.n_warmup_steps,
            n_min_trials=self.n_min_trials,
        )


class SuccessiveHalving(_Pruner):
    """Asynchronous successive halving: keep the best 1/reduction_factor at each rung."""

    type: Literal["successive_halving"] = "successive_halving"
    min_resource: int | Literal["auto"] = "auto"  # steps before the first rung
    reduction_factor: int = Field(3, ge=2)

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``SuccessiveHalvingPruner``."""
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_resource, reduction_factor=self.reduction_factor
        )


class Hyperband(_Pruner):
    """Hyperband: successive halving in several brackets of minimum resource."""

    type: Literal["hyperband"] = "hyperband"
    min_resource: int | Literal["auto"] = "auto"  # "auto" means 1 step
    reduction_factor: int = Field(3, ge=2)

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``HyperbandPruner`` (maximum resource measured from the first trial)."""
        return optuna.pruners.HyperbandPruner(
            min_resource=1 if self.min_resource == "auto" else self.min_resource,
            max_resource="auto",
            reduction_factor=self.reduction_factor,
        )


class Wilcoxon(_Pruner):
    """Wilcoxon signed-rank test of a trial's folds against the best trial's same folds."""

    type: Literal["wilcoxon"] = "wilcoxon"
    p_threshold: float = Field(0.1, gt=0, lt=1)
    n_startup_steps: int = Field(2, ge=0)  # folds before it may prune
    per_fold: ClassVar[bool] = True

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``WilcoxonPruner``."""
        return optuna.pruners.WilcoxonPruner(
            p_threshold=self.p_threshold, n_startup_steps=self.n_startup_steps
        )


class NoPruning(_Pruner):
    """Every trial runs to its end."""

    type: Literal["none"] = "none"

    def create(self) -> optuna.pruners.BasePruner:
        """Optuna's ``NopPruner``."""
        return optuna.pruners.NopPruner()


def _default_type(value: Any) -> Any:
    """A pruner section without ``type`` is the default pruner's."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": DEFAULT_TYPE, **value}
    return value


PrunerConfig = Annotated[
    MedianPruning | PercentilePruning | SuccessiveHalving | Hyperband | Wilcoxon | NoPruning,
    Field(discriminator="type"),
    BeforeValidator(_default_type),
]
"""The ``pruner:`` section of a study file: one of the classes above, chosen by ``type``."""
