"""The k-fold reporting scheme, checked through ask/tell with made-up values (no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pydantic import TypeAdapter

from studies.config import StudyConfig
from studies.pruners import MedianPruning, PrunerConfig
from studies.pruning import GRID, PruningCallback, ReportSchedule, create_pruner
from trainer.callbacks import FoldInfo


def fold(index: int, epochs: int) -> FoldInfo:
    return FoldInfo(f"fold-{index}", index, 10, 5, epochs, Path("."))


def play(
    study: optuna.Study, epochs: int, accuracy: float, folds: int = 3
) -> optuna.trial.FrozenTrial:
    """Feed a trial's epochs and folds through the real callback; tell the outcome."""
    trial = study.ask()
    callback = PruningCallback(trial, ReportSchedule())
    try:
        for k in range(folds):
            for epoch in range(epochs):
                callback.on_epoch_end(
                    fold(k, epochs), epoch, {"val/acc": accuracy * (epoch + 1) / epochs}
                )
            callback.on_fold_end(fold(k, epochs), {"best/val_acc": accuracy + 0.01 * k})
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, accuracy)
    return study.trials[-1]


def test_every_fold_reaches_the_pruner_and_steps_never_collide() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    done = play(study, epochs=4, accuracy=0.8, folds=5)
    # tenths of fold 0's schedule that its 4 epochs complete, then one step per later fold
    assert sorted(done.intermediate_values) == [1, 4, 6, 9, 10, 11, 12, 13]
    fold_steps = [done.intermediate_values[GRID - 1 + k] for k in range(1, 5)]
    expected = [sum(0.8 + 0.01 * i for i in range(k + 1)) / (k + 1) for k in range(1, 5)]
    assert fold_steps == pytest.approx(expected)  # running mean over the folds done


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [
        (1, [9]),
        (2, [4, 9]),
        (3, [2, 5, 9]),
        (4, [1, 4, 6, 9]),
        (10, list(range(10))),
        (13, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ],
)
def test_epochs_report_at_the_tenth_of_the_schedule_they_complete(
    epochs: int, expected: list[int]
) -> None:
    schedule = ReportSchedule()
    steps = [s for e in range(epochs) for s, _ in schedule.after_epoch(0, e, epochs, 0.5)]
    assert steps == expected


def test_clearly_worse_trial_is_pruned_in_its_first_fold() -> None:
    pruner = create_pruner(MedianPruning(n_startup_trials=2, n_warmup_steps=0))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for accuracy in (0.8, 0.85, 0.9):
        assert play(study, epochs=5, accuracy=accuracy).state == TrialState.COMPLETE
    bad = play(study, epochs=5, accuracy=0.1)
    assert bad.state == TrialState.PRUNED
    assert max(bad.intermediate_values) < GRID  # stopped inside fold 0


def test_longer_schedules_are_compared_at_the_same_fraction() -> None:
    # A 10-epoch trial that learns as well per fraction of its schedule as 2-epoch trials is
    # not pruned, although after its first epoch it has seen less training.
    pruner = create_pruner(MedianPruning(n_startup_trials=2))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(3):
        play(study, epochs=2, accuracy=0.8)
    assert play(study, epochs=10, accuracy=0.8).state == TrialState.COMPLETE


def test_wilcoxon_reports_each_fold_at_its_index() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PruningCallback(trial, ReportSchedule(per_fold=True))
    for k in range(3):
        callback.on_epoch_end(fold(k, 2), 0, {"val/acc": 0.5})
        callback.on_fold_end(fold(k, 2), {"best/val_acc": 0.6 + k / 10})
    study.tell(trial, 0.7)
    assert study.trials[0].intermediate_values == pytest.approx({0: 0.6, 1: 0.7, 2: 0.8})


@pytest.mark.parametrize(
    "kind", ["median", "percentile", "successive_halving", "hyperband", "wilcoxon", "none"]
)
def test_every_configured_pruner_is_created(kind: str) -> None:
    config = TypeAdapter(PrunerConfig).validate_python({"type": kind})
    assert isinstance(create_pruner(config), optuna.pruners.BasePruner)


@pytest.mark.parametrize(
    ("section", "expected", "settings"),
    [
        ({"type": "median"}, optuna.pruners.MedianPruner, {"_n_startup_trials": 5}),
        ({"n_warmup_steps": 3}, optuna.pruners.MedianPruner, {"_n_warmup_steps": 3}),
        ({"type": "percentile", "percentile": 40}, optuna.pruners.PercentilePruner, {}),
        ({"type": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner, {}),
        ({"type": "hyperband", "reduction_factor": 2}, optuna.pruners.HyperbandPruner, {}),
        ({"type": "wilcoxon", "p_threshold": 0.05}, optuna.pruners.WilcoxonPruner, {}),
        ({"type": "none"}, optuna.pruners.NopPruner, {}),
    ],
)
def test_each_pruner_section_builds_its_own_pruner(
    section: dict[str, object], expected: type, settings: dict[str, object]
) -> None:
    config = TypeAdapter(PrunerConfig).validate_python(section)
    pruner = config.create()
    assert type(pruner) is expected
    assert {name: getattr(pruner, name) for name in settings} == settings
    assert config.per_fold == (section.get("type") == "wilcoxon")  # only Wilcoxon per fold


def test_default_pruner_is_the_median_pruner_with_optunas_startup() -> None:
    study = StudyConfig.model_validate(
        {
            "name": "s",
            "base": {},
            "search_space": {"train.lr": {"type": "float", "low": 0.1, "high": 1}},
        }
    )
    assert study.pruner == MedianPruning(n_startup_trials=5, n_warmup_steps=0)


def test_a_setting_of_another_pruner_is_refused() -> None:
    with pytest.raises(ValueError, match="p_threshold"):
        TypeAdapter(PrunerConfig).validate_python({"type": "median", "p_threshold": 0.1})
