"""Report scaling: `studies report` on synthetic stores of 100, 1000 (and 5000) runs.

Each store holds one study run, T trial runs and 5 fold runs per trial with 10 epochs of the
per-epoch metrics (`trainer.metrics`), logged through MlflowClient as `studies run` would. The
figure is the report's wall time per size, and the ratio of the largest to the 1000-run time
against the ratio of their run counts (1.0 = exactly linear).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from bench.common import save, timed
from trainer.metrics import EPOCH_METRICS

FOLDS, EPOCHS = 5, 10


def add_trial(
    client: MlflowClient, experiment: str, study_run: str, name: str, trial: int, predictions: Path
) -> None:
    """One synthetic trial run with its fold runs, metrics histories and predictions."""
    now = int(time.time() * 1000)
    state = "PRUNED" if trial % 3 == 2 else "COMPLETE"
    value = 0.5 + 0.4 * ((trial * 37) % 100) / 100
    run = client.create_run(
        experiment,
        run_name=f"trial-{trial}",
        tags={
            "mlflow.parentRunId": study_run,
            "optuna.trial": str(trial),
            "optuna.state": state,
            "optuna.study": name,
            "optuna.worker": f"host:{trial % 4}:0",
        },
    )
    params = [
        Param("train.lr", str(1e-4 * (1 + trial % 9))),
        Param("model.backbone", ["resnet18", "resnet34"][trial % 2]),
        Param("train.epochs", str(EPOCHS)),
        Param("data.folds", str(FOLDS)),
        Param("trial_number", str(trial)),
    ]
    metrics = [
        Metric("objective", value, now, 0),
        Metric("cv/val_acc_mean", value, now, 0),
        Metric("cv/val_acc_std", 0.01, now, 0),
        Metric("epochs_trained", FOLDS * EPOCHS, now, 0),
    ]
    client.log_batch(
        run.info.run_id, metrics=metrics if state == "COMPLETE" else metrics[-1:], params=params
    )
    for fold in range(FOLDS):
        child = client.create_run(
            experiment, run_name=f"fold-{fold}", tags={"mlflow.parentRunId": run.info.run_id}
        )
        history = [
            Metric(key, value * (e + 1) / EPOCHS, now, e)
            for e in range(EPOCHS)
            for key in EPOCH_METRICS
        ]
        history.append(Metric("best/val_acc", value, now, 0))
        client.log_batch(child.info.run_id, metrics=history)
        client.log_artifact(child.info.run_id, str(predictions))
        client.set_terminated(child.info.run_id)
    client.set_terminated(run.info.run_id, "FINISHED" if state == "COMPLETE" else "KILLED")


def build_store(uri: str, name: str, trials: int, scratch: Path) -> int:
    """A synthetic study with ``trials`` trials; returns the number of runs created."""
    client = MlflowClient(uri)
    experiment = client.create_experiment(name, artifact_location=(scratch / "artifacts").as_uri())
    space = {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True, "step": None},
        "model.backbone": {"type": "categorical", "choices": ["resnet18", "resnet34"]},
    }
    study = client.create_run(
        experiment,
        run_name=f"study-{name}",
        tags={"kind": "study", "optuna.study": name, "optuna.search_space": json.dumps(space)},
    )
    predictions = scratch / "val_predictions.csv"
    predictions.write_text(
        "path,label,predicted\n" + "".join(f"{i}.png,{i % 2},{i % 2}\n" for i in range(20))
    )
    for trial in range(trials):
        add_trial(client, experiment, study.info.run_id, name, trial, predictions)
    client.set_terminated(study.info.run_id)
    return 1 + trials * (1 + FOLDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also 5000 runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [17, 167, 834] if args.full else [17, 167]  # trials: ~100, ~1000, ~5000 runs
    from studies.report.build import write_report

    results: list[dict[str, Any]] = []
    for trials in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
            os.environ["MLFLOW_TRACKING_URI"] = uri
            runs = build_store(uri, "synthetic", trials, Path(scratch))
            out = Path(scratch) / "report.html"
            timing = timed(functools.partial(write_report, ["synthetic"], out), args.repeats)
            results.append({"trials": trials, "runs": runs, "seconds": timing})
            print(
                f"{runs} runs: report {timing['median']:.2f} s (min {timing['min']:.2f}, max {timing['max']:.2f})"
            )
    base = (
        next(r for r in results if r["runs"] >= 1000)
        if any(r["runs"] >= 1000 for r in results)
        else results[-1]
    )
    largest = results[-1]
    scaling = (largest["seconds"]["median"] / base["seconds"]["median"]) / (
        largest["runs"] / base["runs"]
    )
    path = save(
        "report_scaling",
        {
            "mode": "full" if args.full else "quick",
            "sizes": results,
            "seconds_at_1000_runs": base["seconds"]["median"],
            "target_seconds_at_1000_runs": 10.0,
            "scaling_vs_linear": scaling if largest is not base else None,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
