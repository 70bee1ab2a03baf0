"""One trial: sample a config, fit it with pruning reports, record the outcome in MLflow."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import optuna

from studies.config import StudyConfig
from studies.pruning import PruningCallback, ReportSchedule
from studies.space import suggest, trial_config
from studies.tracking import StudyTracker
from trainer.config import Config
from trainer.fit import fit
from trainer.tracking import MlflowTracker

log = logging.getLogger(__name__)


class Objective:
    """Runs one claimed trial (its worker is already recorded): returns the CV mean validation
    accuracy, raises ``optuna.TrialPruned`` when pruned."""

    def __init__(self, study: StudyConfig, base: Config, tracker: StudyTracker) -> None:
        self.study = study
        self.base = base
        self.tracker = tracker
        self.per_fold_reports = study.pruner.per_fold

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.study.search_space)
        run_id = self.tracker.start_trial(trial)
        pruning = PruningCallback(trial, ReportSchedule(per_fold=self.per_fold_reports))
        started = time.monotonic()
        try:
            config = trial_config(self.base, values, self.study.name)
            tracker = MlflowTracker(
                config.tracking,
                config.experiment,
                run_id=run_id,
                killed_on=(optuna.TrialPruned, KeyboardInterrupt),
            )
            summary = fit(config, [tracker, pruning])
        except optuna.TrialPruned:
            return self._pruned(trial, run_id, pruning, started)
        except BaseException as error:
            state = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAIL"
            message = f"{type(error).__name__}: {error}"[:5000]
            trial.set_user_attr("error", message)
            self._end(run_id, state, pruning, started, {"error": message})
            raise
        value = float(summary["cv/val_acc_mean"])
        metrics = {"objective": value, "cv/val_acc_std": float(summary["cv/val_acc_std"])}
        self._end(run_id, "COMPLETE", pruning, started, {}, metrics)
        return value

    def _pruned(
        self, trial: optuna.Trial, run_id: str, pruning: PruningCallback, started: float
    ) -> float:
        step, value = pruning.last_report or (-1, float("nan"))
        tags = {"optuna.pruned_step": str(step), "optuna.pruned_value": f"{value:.6f}"}
        self._end(run_id, "PRUNED", pruning, started, tags)
        if self.per_fold_reports and pruning.schedule.fold_bests:
            # Per-fold (Wilcoxon): Optuna recommends returning the mean so far, not raising.
            trial.set_user_attr("pruned", True)
            return float(np.mean(pruning.schedule.fold_bests))
        raise optuna.TrialPruned(f"pruned at step {step} with value {value:.4f}")

    def _end(
        self,
        run_id: str,
        state: str,
        pruning: PruningCallback,
        started: float,
        tags: dict[str, str],
        metrics: dict[str, Any] | None = None,
    ) -> None:
        numbers = {
            "epochs_trained": pruning.epochs_trained,
            "trial_seconds": time.monotonic() - started,
        }
        self.tracker.end_trial(run_id, state, {**numbers, **(metrics or {})}, tags)
