"""The study's sampler: TPE whose random draws are seeded per trial, from the study seed and
the trial number.

Separate ``studies run`` processes on one storage each build their own sampler. Seeded with the
study seed alone, they would draw the same random startup configurations (and the same TPE
candidates) and repeat each other's trials. The trial number is handed out by the storage,
atomically and once, so seeding every trial from ``(seed, trial number)`` gives each trial its
own random stream whichever process runs it, and the same stream when the study is rerun with
the same seed: results are reproducible as far as the order in which trials finish allows.
Trials that run at the same time are kept apart by TPE's constant liar (Optuna 5's default).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial's draws: a stable hash of the study seed and the trial number."""
    digest = hashlib.sha256(f"{study_seed}:{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # numpy's RandomState takes 32-bit seeds


def create_sampler(seed: int | None, n_startup_trials: int) -> BaseSampler:
    """The sampler of a study: per-trial seeded TPE, or plain unseeded TPE for ``seed: null``."""
    if seed is None:
        return TPESampler(n_startup_trials=n_startup_trials)
    return TrialSeededTPESampler(seed, n_startup_trials)


class TrialSeededTPESampler(BaseSampler):
    """Optuna's TPESampler, with a fresh one seeded by :func:`trial_seed` for every trial.

    TPE keeps no state between trials that matters (it reads the study's trials each time), so
    a TPESampler per trial behaves as one sampler would, apart from where its randomness
    comes from. Only Optuna's public sampler interface is used.
    """

    def __init__(self, seed: int, n_startup_trials: int) -> None:
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self._samplers: dict[int, TPESampler] = {}
        self._lock = threading.Lock()  # Optuna may sample trials from several threads

    def _for(self, trial: FrozenTrial) -> TPESampler:
        with self._lock:
            sampler = self._samplers.get(trial.number)
            if sampler is None:
                sampler = TPESampler(
                    seed=trial_seed(self.seed, trial.number),
                    n_startup_trials=self.n_startup_trials,
                )
                self._samplers[trial.number] = sampler
            return sampler

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """TPE's relative search space for this trial."""
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """TPE's relative sample, drawn from this trial's random stream."""
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """TPE's (or, during startup, random) sample, drawn from this trial's random stream."""
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Create this trial's seeded TPE sampler."""
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Let TPE finish the trial, then drop its sampler."""
        self._for(trial).after_trial(study, trial, state, values)
        with self._lock:
            self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial is seeded from its number, which threads never share."""
