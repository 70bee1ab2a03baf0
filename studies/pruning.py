"""Reporting k-fold training to an Optuna pruner without losing folds or comparing unfairly.

``trial.report`` keeps only the first value per step, so "step = epoch" inside every fold would
silently drop folds 1..k-1. And when ``epochs`` is searched, "epoch 3" of a 10-epoch cosine
schedule (learning rate still high) is not comparable with epoch 3 of a 3-epoch one (annealed).

The scheme used here, with ``GRID = 4``:

* steps 0..3 come from the first fold, at quarters of its own schedule: an epoch that ends at
  fraction ``p`` of the fold's epochs reports its validation accuracy at step
  ``floor(4 * p) - 1`` (the last quarter it completes; a 2-epoch trial reports at steps 1 and 3,
  a 3-epoch trial at 0, 1 and 3, a 4-epoch trial at 0..3). Trials are thus compared at the same
  fraction of their own cosine schedule, never a long schedule's early, high-learning-rate epoch
  against a short one's annealed end.
* step ``3 + f`` (f >= 1) is reported when fold ``f`` ends: the mean best validation accuracy of
  folds 0..f. Every fold reaches the pruner; the last one is the objective itself.

Why quarters: a median or percentile pruner judges a step only against the completed trials
that reported that same step. On tenths (the grid before), a 3-epoch trial shared no step with
2- or 4-epoch trials before the end of the first fold, so it was often judged against a single
completed 3-epoch trial; with quarters every schedule of two epochs or more reports at the half
(step 1) and at the end (step 3) of the first fold, and the bar is the median of all of them
(measured in docs/benchmarks.md, pruning economy).

Bad trials can stop at the half of their first fold (the default pruner waits that long; with
``n_warmup_steps: 0``, after its first quarter); a trial that survives fold 0 is judged
on whole folds. A pruner made for per-instance values (``per_fold`` in ``studies.pruners``: the
Wilcoxon pruner) instead gets each fold's own best accuracy at step = fold index, and a pruned
trial returns the mean of the folds it trained, as Optuna recommends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from studies.pruners import PrunerConfig
from trainer.callbacks import Callback, FoldInfo

GRID = 4  # reports over the first fold's schedule: its quarters


class ReportSchedule:
    """Maps fold and epoch results of one trial to ``(step, value)`` reports."""

    def __init__(self, per_fold: bool = False) -> None:
        self.per_fold = per_fold  # one report per fold, its own value (Wilcoxon)
        self.fold_bests: list[float] = []
        self._next_grid_step = 0

    def after_epoch(
        self, fold: int, epoch: int, epochs: int, val_acc: float
    ) -> list[tuple[int, float]]:
        """Reports due after ``epoch`` (0-based) of ``epochs`` in fold ``fold``."""
        if self.per_fold or fold != 0:
            return []
        reached = min(math.floor(GRID * (epoch + 1) / epochs + 1e-9), GRID)
        if reached <= self._next_grid_step:
            return []  # this epoch completes no new tenth of the schedule
        self._next_grid_step = reached
        return [(reached - 1, val_acc)]

    def after_fold(self, fold: int, best_val_acc: float) -> list[tuple[int, float]]:
        """Reports due when fold ``fold`` ends with its best validation accuracy."""
        self.fold_bests.append(best_val_acc)
        if self.per_fold:
            return [(fold, best_val_acc)]
        if fold == 0:
            return []
        return [(GRID - 1 + fold, float(np.mean(self.fold_bests)))]


class PruningCallback(Callback):
    """Reports to an Optuna trial during a fit and raises ``TrialPruned`` when told to stop."""

    def __init__(self, trial: optuna.Trial, schedule: ReportSchedule) -> None:
        self.trial = trial
        self.schedule = schedule
        self.epochs_trained = 0
        self.last_report: tuple[int, float] | None = None

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs_trained += 1
        if fold.index >= 0:
            self._report(
                self.schedule.after_epoch(fold.index, epoch, fold.epochs, metrics["val/acc"])
            )

    def on_fold_end(self, fold: FoldInfo, summary: dict[str, Any]) -> None:
        if fold.index >= 0:
            self._report(self.schedule.after_fold(fold.index, summary["best/val_acc"]))

    def _report(self, reports: list[tuple[int, float]]) -> None:
        for step, value in reports:
            self.trial.report(value, step)
            self.last_report = (step, value)
        if reports and self.trial.should_prune():
            step, value = reports[-1]
            raise optuna.TrialPruned(f"pruned at step {step} with value {value:.4f}")


def create_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    """The configured Optuna pruner (each pruner config builds its own)."""
    return config.create()
