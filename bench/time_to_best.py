"""Time-to-best against the tutorial: a notebook-style Optuna search against ``studies run``.

The baseline is written the tutorial's way (``bench.notebook_search``). ``studies run`` gets
the same data, holdout and folds, search space, sampler (TPE, same seed and startup trials)
and trial count, with its defaults (median pruner, ``precision: auto``, ``workers: auto``: on
a 2-core machine the ``studies run`` process and one more, one torch thread each). Time is the
budget, not the number of trials: until it reaches the baseline's best, ``studies run`` is
topped up by as many trials again (``n_trials`` is a total), for as long as the baseline's
whole search took (``MAX_ROUNDS`` rounds at most).

Figure: seconds until the baseline's final best CV accuracy was first reached, baseline ÷
studies (target >= 3); a seed whose ``studies run`` never reached it within the budget gives
a bound instead (its speedup is below baseline seconds ÷ the seconds it searched). Which trial
first crosses the baseline's best decides one run's figure, so both searches run side by side
for each of several sampler seeds (the data, holdout and folds stay fixed) and the figure is
the median over seeds, with its spread and every seed's value. Each seed's ``studies run``
starts cold: its own image cache, execution-mode cache, split folder, journal and experiment. Where a trial's seconds go besides its epochs is
measured on the side (``bench.trial_costs``). Quick mode: tiny timm models, 3 folds, 2-4
epochs, 16-32 px, on the digits twice: as 500x375 JPEGs (the decoding cost of photos) and as
32 px PNGs.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import save, write_photos
from bench.notebook_search import BATCH, FOLDS, SEED, TEST_SIZE, run_tutorial
from bench.trial_costs import TrialCosts, process_start_seconds, spread, summarise
from studies.placement import threads_per_worker, worker_count

DEMO = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"
SPACE: dict[str, Any] = {
    "train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "train.epochs": {"type": "int", "low": 2, "high": 4},
    "train.image_size": {"type": "int", "low": 16, "high": 32, "step": 16},
    "model.backbone": {"type": "categorical", "choices": ["test_resnet", "test_efficientnet"]},
}
SEEDS = (42, 7, 2026, 1, 123)  # sampler seeds, one pair of searches each
MAX_ROUNDS = 8  # top-ups of --trials each: a search that never reaches the target still ends


def study_file(root: Path, seed: int = SEED) -> Path:
    """The demo study with the baseline's search, data, folds, sampler (seed) and batch."""
    import yaml

    raw = yaml.safe_load(DEMO.read_text())
    raw["base"]["file"] = str(DEMO.parent / raw["base"]["file"])
    raw["base"]["set"] = [
        "train.refit=false",
        "tracking.log_model=false",
        f"data.folds={FOLDS}",
        f"data.test_size={TEST_SIZE}",
        f"seed={SEED}",
        f"train.batch_size={BATCH}",
        "runtime.precision=auto",
        "runtime.channels_last=auto",
        f"data.root={root}",
        f"output.dir={root.parent / f'out-{seed}'}",
        "runtime.progress=false",
    ]
    sampler = {"seed": seed, "n_startup_trials": 4}
    raw.update(name=f"studies-{seed}", search_space=SPACE, sampler=sampler)
    config_path = root.parent / f"studies-{seed}.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))  # suggest in SPACE order
    return config_path


@contextmanager
def cold_caches(folder: Path) -> Iterator[None]:
    """Image and execution-mode caches in ``folder`` for the block, as on a fresh machine (and
    none of this process's open image caches: a new worker process has none)."""
    import trainer.fit
    from trainer.data.cache import CacheRegistry

    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "TIMM_STUDIES_CACHE")}
    os.environ["XDG_CACHE_HOME"] = str(folder)
    os.environ["TIMM_STUDIES_CACHE"] = str(folder / "images")
    registry, trainer.fit.CACHES = trainer.fit.CACHES, CacheRegistry()
    try:
        yield
    finally:
        trainer.fit.CACHES = registry
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def run_studies(root: Path, trials: int, target: float, seed: int, budget: float) -> dict[str, Any]:
    """``studies run`` on the same search, topped up by ``trials`` more at a time until a trial
    reaches ``target`` or ``budget`` seconds have passed (no trial starts after that)."""
    config_path = study_file(root, seed)
    storage = str(root.parent / f"studies-{seed}.journal")
    start = time.time()
    invocations: list[float] = []
    total, result = 0, {}
    while time.time() - start < budget and total < MAX_ROUNDS * trials:
        total += trials
        began = time.perf_counter()
        timeout = budget - (time.time() - start)
        _invoke(config_path, storage, total, timeout, root.parent / f"cache-{seed}")
        invocations.append(time.perf_counter() - began)
        result = _trials_of(f"studies-{seed}", storage, start)
        if any(value >= target for _, value in result["finished"]):
            break
    return {**result, "invocation_seconds": invocations, "searched_seconds": time.time() - start}


def _invoke(config_path: Path, storage: str, total: int, timeout: float, cache: Path) -> None:
    """One ``studies run`` up to ``total`` trials, starting none after ``timeout`` seconds."""
    from studies.cli import main as studies

    with cold_caches(cache):
        command = ["run", str(config_path), "--storage", storage, "--n-trials", str(total)]
        assert studies([*command, "--timeout", f"{max(timeout, 0.1):.1f}"]) == 0


def _trials_of(name: str, storage: str, start: float) -> dict[str, Any]:
    """The study's finished trials as (seconds since ``start``, value), its state counts, and
    every trial's state, value, pruning reports and parameters (to judge what was pruned)."""
    import optuna

    from studies.storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(storage).storage)
    finished = [
        (t.datetime_complete.timestamp() - start, float(t.value))
        for t in study.trials
        if t.value is not None and t.datetime_complete is not None and t.state.name == "COMPLETE"
    ]
    counts = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED")}
    tried = [
        {"state": t.state.name, "value": t.value, "reports": t.intermediate_values, **t.params}
        for t in study.trials
    ]
    return {"finished": sorted(finished), "trials": len(study.trials), **counts, "tried": tried}


def first_reaching(finished: list[tuple[float, float]], target: float) -> float | None:
    """Seconds at which a finished trial first reached ``target`` (None: never)."""
    times = [seconds for seconds, value in sorted(finished) if value >= target]
    return times[0] if times else None


def one_seed(root: Path, data: str, trials: int, seed: int, costs: TrialCosts) -> dict[str, Any]:
    """Both searches with one sampler seed, one after the other; the seed's figures."""
    baseline, baseline_params = run_tutorial(root, trials, seed)
    target = max(value for _, value in baseline)
    before = len(costs.records)
    budget = max(seconds for seconds, _ in baseline)  # the baseline's whole search
    with costs.active():
        ours = run_studies(root, trials, target, seed, budget)
    costs.tag_last(len(costs.records) - before, study=f"{data}-{seed}", seed=seed)
    baseline_seconds = first_reaching(baseline, target)
    ours_seconds = first_reaching(ours["finished"], target)
    speedup = baseline_seconds / ours_seconds if baseline_seconds and ours_seconds else None
    below = None if speedup else (baseline_seconds or 0.0) / ours["searched_seconds"]
    print(
        f"{data} seed {seed}: baseline best {target:.4f} after {baseline_seconds:.0f} s; studies "
        f"reached it after {ours_seconds if ours_seconds is None else round(ours_seconds)} s of "
        f"{ours['searched_seconds']:.0f} s searched: speedup "
        f"{round(speedup, 2) if speedup else f'< {below:.2f}'} (target >= 3)",
        flush=True,
    )
    return {
        "seed": seed,
        "target_value": target,
        "baseline": {
            "finished": baseline,
            "params": baseline_params,  # of each finished trial, in the same order
            "seconds_to_target": baseline_seconds,
        },
        "studies": {**ours, "seconds_to_target": ours_seconds},
        "speedup": speedup,
        "speedup_below": below,
    }


def median_speedup(runs: list[dict[str, Any]]) -> tuple[float, bool]:
    """The median over seeds, and whether it is a bound: a seed that never reached the target
    ranks at its bound (its speedup is below it)."""
    ranked = sorted(
        (run["speedup"], False) if run["speedup"] else (run["speedup_below"], True) for run in runs
    )
    middle = len(ranked) // 2
    if len(ranked) % 2:
        return ranked[middle]
    (low, low_bound), (high, high_bound) = ranked[middle - 1], ranked[middle]
    return (low + high) / 2, low_bound or high_bound


def compare(scratch: Path, data: str, trials: int, seeds: list[int]) -> dict[str, Any]:
    """Both searches per seed on one copy of the digits; the figures of one case."""
    from trainer.data.sample_data import write_digits

    root = scratch / data / "digits"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / data / 'mlflow.db'}"
    write_photos(root) if data == "photos" else write_digits(root)
    costs = TrialCosts()
    runs = [one_seed(root, data, trials, seed, costs) for seed in seeds]
    median, bound = median_speedup(runs)
    reached = [run["speedup"] for run in runs if run["speedup"]]
    return {
        "data": DATA[data],
        "speedup": median,
        "speedup_is_bound": bound,  # the median seed never reached the target: "below"
        "speedup_min": min(reached, default=None),  # of the seeds that reached the target
        "speedup_max": max(reached, default=None),
        "speedups": {str(run["seed"]): run["speedup"] for run in runs},
        "speedups_below": {str(run["seed"]): run["speedup_below"] for run in runs},
        "seeds": runs,
        "trial_costs": summarise(costs.records),
        "trial_records": costs.records,
    }


DATA = {
    "photos": "the 1797 digits as 500x375 colour JPEGs",
    "small": "the 1797 digits as 32x32 grey PNGs",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["photos", "small"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = process_start_seconds()
    with tempfile.TemporaryDirectory() as scratch:
        cases = [compare(Path(scratch), data, args.trials, args.seeds) for data in args.data]
    fixed = [r["fixed"] for case in cases for r in case["trial_records"]]
    workers = worker_count("auto")
    result = {
        "mode": f"{FOLDS} folds, {args.trials} trials (studies topped up by as many for as long "
        f"as the baseline searched), sampler seeds {' '.join(map(str, args.seeds))}",
        "search_space": SPACE,
        "cases": cases,
        "fixed_seconds_per_trial": spread(fixed),
        "process_start_seconds": start,
        "workers": workers,  # studies run's default here; this process is one (its trials timed)
        "threads_per_worker": threads_per_worker(workers),
        "target_speedup": 3.0,
        "target_fixed_seconds": 0.5,
    }
    for case in cases:
        below = "< " if case["speedup_is_bound"] else ""
        print(f"{case['data']}: median speedup {below}{case['speedup']:.2f} over seeds")
    print(f"fixed cost per trial: {statistics.median(fixed) if fixed else None} s (target <= 0.5)")
    save("time_to_best", result)


if __name__ == "__main__":
    main()
