"""The study sampler: per-trial seeds make separate processes distinct and reruns reproducible."""

from __future__ import annotations

import optuna
from optuna.storages import InMemoryStorage

from studies.sampling import TrialSeededTPESampler, create_sampler, trial_seed


def lr(trial: optuna.Trial) -> float:
    return trial.suggest_float("lr", 1e-8, 1e-2, log=True)


def draws(studies: list[optuna.Study], n_trials: int) -> list[float]:
    """Ask each study in turn (processes sharing a storage), finishing every trial."""
    values = []
    for number in range(n_trials):
        study = studies[number % len(studies)]
        trial = study.ask()
        values.append(lr(trial))
        study.tell(trial, values[-1])
    return values


def shared(n_processes: int, seed: int | None, startup: int = 100) -> list[optuna.Study]:
    storage = InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage)
    return [
        optuna.load_study(study_name="s", storage=storage, sampler=create_sampler(seed, startup))
        for _ in range(n_processes)
    ]


def test_processes_with_the_same_seed_on_one_storage_draw_different_trials() -> None:
    values = draws(shared(3, seed=3), 9)
    assert len(set(values)) == 9


def test_a_trial_draws_the_same_whichever_process_runs_it() -> None:
    alone, together = draws(shared(1, seed=3), 6), draws(shared(3, seed=3), 6)
    assert alone == together  # random startup trials: reproducible for --workers W
    assert draws(shared(1, seed=4), 6) != alone


def test_tpe_trials_after_startup_are_reproducible_too() -> None:
    assert draws(shared(2, seed=3, startup=2), 8) == draws(shared(2, seed=3, startup=2), 8)


def test_no_seed_means_unseeded() -> None:
    assert not isinstance(create_sampler(None, 2), TrialSeededTPESampler)
    assert draws(shared(1, seed=None), 3) != draws(shared(1, seed=None), 3)


def test_trial_seeds_are_stable_and_distinct() -> None:
    seeds = [trial_seed(3, number) for number in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**32 for s in seeds)
    assert trial_seed(3, 7) == trial_seed(3, 7) != trial_seed(4, 7)
