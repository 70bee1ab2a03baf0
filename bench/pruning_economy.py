"""Pruning economy: the same study (seed, trials, search space) with each pruner and with none.

Figures, per study and per pruner: epochs (and seconds) trained with pruning ÷ without, the
best CV accuracy of each (target: <= 0.5 of the epochs, best no more than 0.5 accuracy points
below) and the trials pruned. The default pruner (the demo study file's ``pruner:`` section,
which the time-to-best study also uses) is measured beside the alternatives in the same run;
an alternative may report on another grid than ``studies.pruning.GRID`` (tenths: the scheme
before quarters).

Studies: ``demo`` is ``studies/configs/demo.yaml`` on the digits as 32 px PNGs; ``photos`` is the
study of the time-to-best bench (``bench.time_to_best.study_file``) on the digits as 500x375
JPEGs. Both run with one torch thread, fp32 and channels_last, so that which trials are pruned
does not hang on timing-based execution choices or the core count. ``--quick`` measures the
default alone on the demo study and writes nothing (the committed figure is the default mode's,
which ``make bench`` runs).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench.common import save

DEMO = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"
STUDIES = {
    "demo": "studies/configs/demo.yaml on the 1797 digits as 32x32 grey PNGs",
    "photos": "the time-to-best study on the 1797 digits as 500x375 colour JPEGs",
}
# Execution pinned: fp32 and channels_last are what "auto" picks for these models here.
PINNED = ["runtime.precision=fp32", "runtime.channels_last=true", "runtime.progress=false"]
TENTHS = 10  # the first fold's grid before quarters
# label: (pruner section, grid of the first fold's reports or None for studies.pruning.GRID)
ALTERNATIVES: dict[str, tuple[dict[str, Any], int | None]] = {
    "median 2/0 (the default before)": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        None,
    ),
    "median 2/2 on tenths (the first default)": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
        TENTHS,
    ),
    "median 2/0 on tenths": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        TENTHS,
    ),
    "median 2/1 (judged from the half)": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        None,
    ),
    "median 2/1, the bottom quarter stopped at the first quarter": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1, "warmup_percentile": 75},
        None,
    ),
    "median 2/0, a step judged once 2 trials reported it": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0, "n_min_trials": 2},
        None,
    ),
    "median of every trial that reported the step": (
        {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0, "median_of": "reported"},
        None,
    ),
    "median, Optuna's 5 startup trials": (
        {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 0},
        None,
    ),
    "successive halving": ({"type": "successive_halving", "reduction_factor": 3}, None),
    "hyperband": ({"type": "hyperband", "reduction_factor": 3}, None),
    "wilcoxon over folds": ({"type": "wilcoxon"}, None),
}


def demo_study(scratch: Path) -> dict[str, Any]:
    """The demo study file, on the digits as PNGs written into ``scratch``."""
    from trainer.data.sample_data import write_digits

    write_digits(scratch / "digits")
    raw = yaml.safe_load(DEMO.read_text())
    raw["base"]["file"] = str(DEMO.parent / raw["base"]["file"])
    raw["base"]["set"] = [
        *raw["base"]["set"],
        f"data.root={scratch / 'digits'}",
        f"output.dir={scratch / 'out'}",
        *PINNED,
    ]
    return dict(raw)


def photos_study(scratch: Path) -> dict[str, Any]:
    """The time-to-best bench's study file, on the digits as JPEGs written into ``scratch``."""
    from bench.common import write_photos
    from bench.time_to_best import study_file

    write_photos(scratch / "digits")
    raw = yaml.safe_load(study_file(scratch / "digits").read_text())
    raw["base"]["set"] = [*raw["base"]["set"], *PINNED]
    return dict(raw)


@contextmanager
def first_fold_grid(grid: int | None) -> Iterator[None]:
    """Trials report on ``grid`` steps of the first fold (None: the scheme's own grid)."""
    import studies.pruning

    kept = studies.pruning.GRID
    studies.pruning.GRID = grid or kept
    try:
        yield
    finally:
        studies.pruning.GRID = kept


def run_study(
    scratch: Path, raw: dict[str, Any], name: str, pruner: dict[str, Any], trials: int
) -> dict[str, Any]:
    """Run ``raw`` as study ``name`` with ``pruner``; what its trials trained and reached."""
    from mlflow import MlflowClient

    from studies.cli import main as studies
    from studies.report.data import load_study
    from trainer.tracking import tracking_uri

    path = scratch / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": name, "pruner": pruner}, sort_keys=False))
    command = ["run", str(path), "--storage", str(scratch / f"{name}.journal")]
    assert studies([*command, "--n-trials", str(trials), "--workers", "1"]) == 0  # this process
    table = load_study(MlflowClient(tracking_uri()), name).trials
    complete = table[table["state"] == "COMPLETE"]
    return {
        "trials": len(table),
        "pruned": int((table["state"] == "PRUNED").sum()),
        "epochs": float(table["epochs_trained"].sum()),
        "seconds": float(table["seconds"].sum()),
        "best_value": float(complete["value"].max()),
        "per_trial": [
            {"state": r.state, "epochs": int(r.epochs_trained), "value": _number(r.value)}
            for r in table.itertuples()
        ],
    }


def _number(value: Any) -> float | None:
    """A JSON-friendly value: None for a missing or NaN number."""
    return None if value is None or math.isnan(value) else round(float(value), 6)


def compare(scratch: Path, name: str, pruners: dict[str, Any], trials: int) -> dict[str, Any]:
    """One study without pruning and with each pruner; the figures of each against none."""
    from studies.pruning import GRID

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    raw = demo_study(scratch) if name == "demo" else photos_study(scratch)
    without = run_study(scratch, raw, f"{name}-none", {"type": "none"}, trials)
    rows = []
    for number, (label, (pruner, grid)) in enumerate(pruners.items()):
        with first_fold_grid(grid):
            measured = run_study(scratch, raw, f"{name}-{number}", pruner, trials)
        row = {"label": label, "pruner": pruner, "grid": grid or GRID, **measured}
        rows.append({**row, **_against(measured, without)})
        print(
            f"{name}: {label}: epochs {rows[-1]['epochs_ratio']:.2f}, best "
            f"{rows[-1]['best_value_difference_points']:+.2f} points, pruned "
            f"{measured['pruned']}/{measured['trials']}"
        )
    return {
        "study": name,
        "data": STUDIES[name],
        "trials": trials,
        "without": without,
        "with": rows,
    }


def _against(measured: dict[str, Any], without: dict[str, Any]) -> dict[str, Any]:
    """Ratios and differences of one pruned study against the same study without pruning."""
    ratio = measured["epochs"] / without["epochs"]
    points = 100 * (measured["best_value"] - without["best_value"])
    return {
        "epochs_ratio": ratio,
        "seconds_ratio": measured["seconds"] / without["seconds"],
        "best_value_difference_points": points,
        "meets_target": ratio <= 0.5 and points >= -0.5,
    }


def pruners_to_measure(default: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The default first (on the scheme's own grid), then every other alternative."""
    others = {label: p for label, p in ALTERNATIVES.items() if p != (default, None)}
    return {"default": (default, None)} if quick else {"default": (default, None), **others}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", choices=sorted(STUDIES), default=list(STUDIES))
    parser.add_argument("--quick", action="store_true", help="the default alone, demo study")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    raw_demo = yaml.safe_load(DEMO.read_text())
    default, trials = raw_demo["pruner"], int(raw_demo["n_trials"])
    pruners = pruners_to_measure(default, args.quick)
    cases = []
    for name in ["demo"] if args.quick else args.studies:
        with tempfile.TemporaryDirectory() as scratch:
            cases.append(compare(Path(scratch), name, pruners, trials))
    if not args.quick:
        result = {"mode": f"{trials} trials per study", "default_pruner": default, "cases": cases}
        save("pruning_economy", {**result, "target_epochs_ratio": 0.5, "target_points": 0.5})


if __name__ == "__main__":
    main()
