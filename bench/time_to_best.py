"""Time-to-best against the tutorial: a notebook-style Optuna search against ``studies run``.

The baseline is written the tutorial's way (``bench.notebook_search``). ``studies run`` gets
the same data, holdout and folds, search space, sampler (TPE, same seed and startup trials)
and trial count, with its defaults (median pruner, ``precision: auto``). If it has not reached the baseline's best after
that many trials, it is topped up (``n_trials`` is a total) to twice as many.

Figure: seconds until the baseline's final best CV accuracy was first reached, baseline ÷
studies (target >= 3). Which trial first crosses the baseline's best decides one run's figure,
so both searches run side by side for each of several sampler seeds (the data, holdout and
folds stay fixed) and the figure is the median over seeds, with its spread and every seed's
value. Each seed's ``studies run`` starts cold: its own image cache, execution-mode cache,
split folder, journal and experiment. Where a trial's seconds go besides its epochs is
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

import torch

from bench.common import save, write_photos
from bench.notebook_search import BATCH, FOLDS, SEED, TEST_SIZE, run_tutorial
from bench.trial_costs import TrialCosts, process_start_seconds, spread, summarise

DEMO = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"
SPACE: dict[str, Any] = {
    "train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "train.epochs": {"type": "int", "low": 2, "high": 4},
    "train.image_size": {"type": "int", "low": 16, "high": 32, "step": 16},
    "model.backbone": {"type": "categorical", "choices": ["test_resnet", "test_efficientnet"]},
}
SEEDS = (42, 7, 2026)  # sampler seeds, one pair of searches each


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


def run_studies(root: Path, trials: int, target: float, seed: int) -> dict[str, Any]:
    """``studies run`` on the same search; topped up to 2x trials if the target is not reached."""
    import optuna

    from studies.cli import main as studies
    from studies.storage import open_storage

    config_path = study_file(root, seed)
    storage = str(root.parent / f"studies-{seed}.journal")
    start = time.time()
    invocations = []
    for total in (trials, 2 * trials):
        began = time.perf_counter()
        with cold_caches(root.parent / f"cache-{seed}"):
            command = ["run", str(config_path), "--storage", storage, "--n-trials", str(total)]
            assert studies(command) == 0
        invocations.append(time.perf_counter() - began)
        study = optuna.load_study(
            study_name=f"studies-{seed}", storage=open_storage(storage).storage
        )
        finished = [
            (t.datetime_complete.timestamp() - start, float(t.value))
            for t in study.trials
            if t.value is not None
            and t.datetime_complete is not None
            and t.state.name == "COMPLETE"
        ]
        if any(value >= target for _, value in finished):
            break
    counts = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED")}
    return {
        "finished": sorted(finished),
        "trials": len(study.trials),
        **counts,
        "invocation_seconds": invocations,
    }


def first_reaching(finished: list[tuple[float, float]], target: float) -> float | None:
    """Seconds at which a finished trial first reached ``target`` (None: never)."""
    times = [seconds for seconds, value in sorted(finished) if value >= target]
    return times[0] if times else None


def one_seed(root: Path, data: str, trials: int, seed: int, costs: TrialCosts) -> dict[str, Any]:
    """Both searches with one sampler seed, one after the other; the seed's figures."""
    baseline = run_tutorial(root, trials, seed)
    target = max(value for _, value in baseline)
    before = len(costs.records)
    with costs.active():
        ours = run_studies(root, trials, target, seed)
    costs.tag_last(len(costs.records) - before, study=f"{data}-{seed}", seed=seed)
    trial_wall = sum(r["wall"] for r in costs.records[before:])
    ours["per_invocation_overhead_seconds"] = (sum(ours["invocation_seconds"]) - trial_wall) / len(
        ours["invocation_seconds"]
    )
    baseline_seconds = first_reaching(baseline, target)
    ours_seconds = first_reaching(ours["finished"], target)
    speedup = baseline_seconds / ours_seconds if baseline_seconds and ours_seconds else None
    print(
        f"{data} seed {seed}: baseline best {target:.4f} after {baseline_seconds:.0f} s; studies "
        f"reached it after {ours_seconds if ours_seconds is None else round(ours_seconds)} s: "
        f"speedup {speedup if speedup is None else round(speedup, 2)} (target >= 3)",
        flush=True,
    )
    return {
        "seed": seed,
        "target_value": target,
        "baseline": {"finished": baseline, "seconds_to_target": baseline_seconds},
        "studies": {**ours, "seconds_to_target": ours_seconds},
        "speedup": speedup,
    }


def median_speedup(speedups: list[float | None]) -> float | None:
    """The median over seeds, a seed whose search never reached the target ranking lowest."""
    ranked = sorted(speedups, key=lambda v: -1.0 if v is None else v)
    middle = len(ranked) // 2
    if len(ranked) % 2:
        return ranked[middle]
    low, high = ranked[middle - 1], ranked[middle]
    return None if low is None or high is None else (low + high) / 2


def compare(scratch: Path, data: str, trials: int, seeds: list[int]) -> dict[str, Any]:
    """Both searches per seed on one copy of the digits; the figures of one case."""
    from trainer.data.sample_data import write_digits

    root = scratch / data / "digits"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / data / 'mlflow.db'}"
    write_photos(root) if data == "photos" else write_digits(root)
    costs = TrialCosts()
    runs = [one_seed(root, data, trials, seed, costs) for seed in seeds]
    speedups = [run["speedup"] for run in runs]
    reached = [v for v in speedups if v is not None]
    return {
        "data": DATA[data],
        "speedup": median_speedup(speedups),
        "speedup_min": min(reached) if len(reached) == len(runs) else None,
        "speedup_max": max(reached) if reached else None,
        "speedups": {str(run["seed"]): run["speedup"] for run in runs},
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
    result = {
        "mode": f"{FOLDS} folds, {args.trials} trials each (studies up to {2 * args.trials}), "
        f"sampler seeds {' '.join(map(str, args.seeds))}",
        "search_space": SPACE,
        "cases": cases,
        "fixed_seconds_per_trial": spread(fixed),
        "process_start_seconds": start,
        "torch_threads": torch.get_num_threads(),  # OMP_NUM_THREADS=1 on a shared, busy machine
        "target_speedup": 3.0,
        "target_fixed_seconds": 0.5,
    }
    for case in cases:
        print(f"{case['data']}: median speedup {case['speedup']} over seeds {case['speedups']}")
    print(f"fixed cost per trial: {statistics.median(fixed) if fixed else None} s (target <= 0.5)")
    save("time_to_best", result)


if __name__ == "__main__":
    main()
