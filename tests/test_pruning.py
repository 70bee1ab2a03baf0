"""The k-fold reporting scheme, checked through ask/tell with made-up values (no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pydantic import TypeAdapter

from studies.config import StudyConfig
from studies.pruners import MedianPruning, PrunerConfig, ReportedMedianPruner, StagedPruner
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
    # quarters of fold 0's schedule that its 4 epochs complete, then one step per later fold
    assert sorted(done.intermediate_values) == [0, 1, 2, 3, 4, 5, 6, 7]
    fold_steps = [done.intermediate_values[GRID - 1 + k] for k in range(1, 5)]
    expected = [sum(0.8 + 0.01 * i for i in range(k + 1)) / (k + 1) for k in range(1, 5)]
    assert fold_steps == pytest.approx(expected)  # running mean over the folds done


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [
        (1, [3]),
        (2, [1, 3]),
        (3, [0, 1, 3]),
        (4, [0, 1, 2, 3]),
        (10, [0, 1, 2, 3]),
        (13, [0, 1, 2, 3]),
    ],
)
def test_epochs_report_at_the_quarter_of_the_schedule_they_complete(
    epochs: int, expected: list[int]
) -> None:
    schedule = ReportSchedule()
    steps = [s for e in range(epochs) for s, _ in schedule.after_epoch(0, e, epochs, 0.5)]
    assert steps == expected


@pytest.mark.parametrize("epochs", range(2, 17))
def test_every_schedule_reports_at_the_half_and_the_end_of_the_first_fold(epochs: int) -> None:
    # Searched epoch counts share these steps, so a pruner judges a trial there against the
    # completed trials of every length (on tenths, 3 epochs shared none with 2 or 4).
    schedule = ReportSchedule()
    steps = {s for e in range(epochs) for s, _ in schedule.after_epoch(0, e, epochs, 0.5)}
    assert {GRID // 2 - 1, GRID - 1} <= steps


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
    pruner = create_pruner(MedianPruning(n_startup_trials=2, n_warmup_steps=0))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(3):
        play(study, epochs=2, accuracy=0.8)
    assert play(study, epochs=10, accuracy=0.8).state == TrialState.COMPLETE


def play_curve(
    study: optuna.Study, curve: list[float], fold_bests: list[float]
) -> optuna.trial.FrozenTrial:
    """A trial whose every fold's epochs reach ``curve`` and whose folds end at ``fold_bests``."""
    trial = study.ask()
    callback = PruningCallback(trial, ReportSchedule())
    epochs = len(curve)
    try:
        for k, best in enumerate(fold_bests):
            for epoch, accuracy in enumerate(curve):
                callback.on_epoch_end(fold(k, epochs), epoch, {"val/acc": accuracy})
            callback.on_fold_end(fold(k, epochs), {"best/val_acc": best})
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, sum(fold_bests) / len(fold_bests))
    return study.trials[-1]


def test_a_slow_starter_is_judged_against_every_schedule_length() -> None:
    # The JPEG study's best trial: 3 epochs whose high learning rate starts slowly and ends
    # best. On tenths its first epoch was judged against the one completed 3-epoch trial (a fast
    # starter) alone and pruned; on quarters the 4-epoch trial's values join the bar.
    pruner = create_pruner(MedianPruning(n_startup_trials=2, n_warmup_steps=0))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    play_curve(study, [0.30, 0.89, 0.93, 0.94], [0.94, 0.94, 0.95])
    play_curve(study, [0.80, 0.96, 0.976], [0.976, 0.98, 0.98])
    slow = play_curve(study, [0.63, 0.93, 0.987], [0.987, 0.987, 0.989])
    assert slow.state == TrialState.COMPLETE
    # ... while a trial below both at the half of its schedule still stops there
    bad = play_curve(study, [0.65, 0.80, 0.85], [0.85, 0.85, 0.85])
    assert bad.state == TrialState.PRUNED and max(bad.intermediate_values) == GRID // 2 - 1


@pytest.mark.parametrize(
    ("pruner", "slow_starter"),
    [
        (MedianPruning(n_startup_trials=2, n_warmup_steps=0), "PRUNED"),
        (MedianPruning(n_startup_trials=2, n_warmup_steps=1, warmup_percentile=75), "COMPLETE"),
    ],
)
def test_a_warmup_percentile_spares_the_middle_and_stops_the_hopeless(
    pruner: MedianPruning, slow_starter: str
) -> None:
    # At the first quarter the median would stop a trial that ranks in the lower half there;
    # keeping the top 75 % there stops only the hopeless, and the median judges from the half.
    study = optuna.create_study(direction="maximize", pruner=create_pruner(pruner))
    for first in (0.5, 0.6, 0.7, 0.8):  # 4 epochs: reports at steps 0..3
        play_curve(study, [first, 0.9 + first / 20, 0.95, 0.96], [0.96, 0.96, 0.96])
    slow = play_curve(study, [0.62, 0.97, 0.98, 0.99], [0.99, 0.99, 0.99])
    assert slow.state.name == slow_starter
    hopeless = play_curve(study, [0.1, 0.2, 0.3, 0.4], [0.4, 0.4, 0.4])
    assert hopeless.state == TrialState.PRUNED and max(hopeless.intermediate_values) == 0
    middling = play_curve(study, [0.65, 0.85, 0.9, 0.9], [0.9, 0.9, 0.9])
    assert middling.state == TrialState.PRUNED  # by the median, at the half at the latest
    assert max(middling.intermediate_values) <= GRID // 2 - 1


def test_a_warmup_percentile_needs_warmup_steps() -> None:
    with pytest.raises(ValueError, match="set n_warmup_steps >= 1"):
        MedianPruning(n_warmup_steps=0, warmup_percentile=75)


@pytest.mark.parametrize(
    ("median_of", "slow_starter"), [("completed", "PRUNED"), ("reported", "COMPLETE")]
)
def test_a_median_of_reported_values_counts_the_pruned_trials(
    median_of: str, slow_starter: str
) -> None:
    # Optuna's median is of completed trials: the fast starters that survived. A trial that
    # starts slower than they did but ends best is stopped at its first report. The median of
    # every trial that reported that step counts the trials stopped there too.
    pruner = create_pruner(MedianPruning(n_startup_trials=2, n_warmup_steps=0, median_of=median_of))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(2):
        play_curve(study, [0.90, 0.95, 0.96, 0.97], [0.97, 0.97, 0.97])
    for _ in range(3):
        poor = play_curve(study, [0.40, 0.50, 0.60, 0.60], [0.60, 0.60, 0.60])
        assert poor.state == TrialState.PRUNED and list(poor.intermediate_values) == [0]
    slow = play_curve(study, [0.70, 0.96, 0.97, 0.99], [0.99, 0.99, 0.99])
    assert slow.state == TrialState[slow_starter]


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
        (
            {"type": "median"},
            optuna.pruners.MedianPruner,
            {"_n_startup_trials": 1, "_n_warmup_steps": 1},
        ),
        ({"n_warmup_steps": 3}, optuna.pruners.MedianPruner, {"_n_warmup_steps": 3}),
        ({"n_min_trials": 2}, optuna.pruners.MedianPruner, {"_n_min_trials": 2}),
        (
            {"median_of": "reported", "n_warmup_steps": 1},
            ReportedMedianPruner,
            {"n_startup_trials": 1, "n_warmup_steps": 1},
        ),
        (
            {"n_warmup_steps": 1, "warmup_percentile": 75},
            StagedPruner,
            {"switch_step": 1},
        ),
        ({"type": "percentile", "percentile": 40}, optuna.pruners.PercentilePruner, {}),
        (
            {"type": "percentile", "n_min_trials": 3},
            optuna.pruners.PercentilePruner,
            {"_n_min_trials": 3},
        ),
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


def default_study_pruner() -> PrunerConfig:
    """The pruner of a study file without a pruner section."""
    study = StudyConfig.model_validate(
        {
            "name": "s",
            "base": {},
            "search_space": {"train.lr": {"type": "float", "low": 0.1, "high": 1}},
        }
    )
    return study.pruner


def test_default_pruner_is_the_median_judged_from_the_half_after_one_trial() -> None:
    assert default_study_pruner() == MedianPruning(n_startup_trials=1, n_warmup_steps=1)


def test_default_pruner_stops_the_second_trial_at_the_half_of_its_first_fold() -> None:
    # One completed trial is enough for the default to judge; a trial far below it stops at the
    # half of its first fold, not at the first quarter (with Optuna's 5 startup trials it
    # trained on).
    study = optuna.create_study(direction="maximize", pruner=create_pruner(default_study_pruner()))
    assert play(study, epochs=4, accuracy=0.9).state == TrialState.COMPLETE
    bad = play(study, epochs=4, accuracy=0.2)
    assert bad.state == TrialState.PRUNED and list(bad.intermediate_values) == [0, 1]


def test_default_pruner_spares_a_slow_starter_that_the_first_quarter_would_stop() -> None:
    # The time-to-best studies' best configurations: far below the others at the first quarter
    # of their first fold, level at the half, best at the end (2/0, the default before, stopped
    # most of them at the first quarter).
    def slow_starter_state(config: PrunerConfig) -> TrialState:
        study = optuna.create_study(direction="maximize", pruner=create_pruner(config))
        for _ in range(2):
            play_curve(study, [0.70, 0.90, 0.94, 0.95], [0.95, 0.95, 0.95])
        return play_curve(study, [0.30, 0.94, 0.98, 0.99], [0.99, 0.99, 0.99]).state

    old_default = MedianPruning(n_startup_trials=2, n_warmup_steps=0)
    assert slow_starter_state(old_default) == TrialState.PRUNED
    assert slow_starter_state(default_study_pruner()) == TrialState.COMPLETE


def test_a_setting_of_another_pruner_is_refused() -> None:
    with pytest.raises(ValueError, match="p_threshold"):
        TypeAdapter(PrunerConfig).validate_python({"type": "median", "p_threshold": 0.1})
