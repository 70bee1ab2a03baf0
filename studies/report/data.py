"""Read studies back from the MLflow tracking store (never from Optuna or in-process state).

Runs come in pages of ``search_runs`` (their latest metrics, params and tags included), so a
study of 1000 runs costs a few requests; per-epoch histories are fetched only for the few
trials whose learning curves are drawn.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from trainer.errors import UserError
from trainer.galleries import FOLDER, LABEL_ISSUES, MISCLASSIFIED
from trainer.metrics import SELECTION_METRIC
from trainer.tracking import PARENT_RUN_TAG

log = logging.getLogger(__name__)

PAGE = 5000  # runs per search request
UI_ADDRESS = "http://127.0.0.1:5000"  # where `make ui` serves the embedded store


@dataclass(frozen=True)
class StudyData:
    """One study as the tracking store has it."""

    name: str
    experiment_id: str
    study_run_id: str | None  # the study-level run the report is attached to
    searched: list[str]  # dotted config keys of the search space
    space: dict[str, Any]  # the logged search space (key -> type, low, high, ...); {} if absent
    trials: pd.DataFrame  # one row per trial run
    folds: pd.DataFrame  # one row per fold run: trial, fold, best_val_acc, run_id


def load_study(client: MlflowClient, name: str) -> StudyData:
    """Everything the report needs about study ``name``; one clear line when there is none."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(
            sorted(e.name for e in client.search_experiments() if e.name != "Default")
        )
        raise UserError(
            f"no study named '{name}' in {client.tracking_uri} (known: {known or 'none'})"
        )
    runs = _all_runs(client, str(experiment.experiment_id))
    study_runs = [r for r in runs if r.data.tags.get("kind") == "study"]
    trial_runs = [r for r in runs if "optuna.trial" in r.data.tags]
    if not trial_runs:
        raise UserError(f"study '{name}' has no trials yet; run `studies run` first")
    space = _logged_space(study_runs)
    searched = list(space) or _varying_params(trial_runs)
    trials = pd.DataFrame([_trial_row(client, r, searched) for r in trial_runs])
    trials.insert(0, "study", name)
    trials = trials.sort_values("trial").reset_index(drop=True)
    if not (trials["state"] == "COMPLETE").any():
        counts = trials["state"].value_counts().to_dict()
        raise UserError(
            f"study '{name}' has no completed trial yet ({counts}); see the runs' error tags"
        )
    by_id = {r.info.run_id: int(r.data.tags["optuna.trial"]) for r in trial_runs}
    folds = pd.DataFrame(
        [
            _fold_row(r, by_id)
            for r in runs
            if r.data.tags.get(PARENT_RUN_TAG) in by_id and r.info.run_name.startswith("fold-")
        ],
        columns=["trial", "fold", "best_val_acc", "run_id"],
    )
    study_run_id = study_runs[0].info.run_id if study_runs else None
    return StudyData(
        name, str(experiment.experiment_id), study_run_id, searched, space, trials, folds
    )


def best_trial(complete: pd.DataFrame) -> pd.Series:
    """The best of the completed trials: highest value, then lowest CV std."""
    return complete.sort_values(["value", "cv_std"], ascending=[False, True]).iloc[0]


@dataclass(frozen=True)
class Gallery:
    """A picture of predictions a run logged (``trainer.galleries``): the PNG and its rows."""

    run_id: str
    png: bytes
    table: pd.DataFrame


def trial_galleries(client: MlflowClient, experiment_id: str, run_id: str) -> dict[str, Gallery]:
    """The galleries of trial run ``run_id`` by name; a trial that did not refit has its
    misclassified holdout images on its latest promotion refit (a run nested under it)."""
    found = _run_galleries(client, run_id)
    if MISCLASSIFIED not in found:
        for refit in _promotion_refits(client, experiment_id, run_id):
            nested = _run_galleries(client, refit)
            if MISCLASSIFIED in nested:
                found[MISCLASSIFIED] = nested[MISCLASSIFIED]
                break
    return found


def _promotion_refits(client: MlflowClient, experiment_id: str, run_id: str) -> list[str]:
    """Finished runs nested under the trial run other than its folds and refit, newest first."""
    nested = f"tags.`{PARENT_RUN_TAG}` = '{run_id}'"
    children = client.search_runs(
        [experiment_id],
        filter_string=f"{nested} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    names = {c.info.run_id: c.info.run_name for c in children}
    return [r for r, name in names.items() if name != "refit" and not name.startswith("fold-")]


def _run_galleries(client: MlflowClient, run_id: str) -> dict[str, Gallery]:
    listed = {artifact.path for artifact in client.list_artifacts(run_id, FOLDER)}
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in (MISCLASSIFIED, LABEL_ISSUES):
            png, csv = f"{FOLDER}/{name}.png", f"{FOLDER}/{name}.csv"
            if png in listed and csv in listed:
                table = pd.read_csv(
                    client.download_artifacts(run_id, csv, scratch),
                    dtype=str,
                    keep_default_na=False,
                    encoding_errors="backslashreplace",
                )
                picture = Path(client.download_artifacts(run_id, png, scratch)).read_bytes()
                found[name] = Gallery(run_id, picture, table)
    return found


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _logged_space(study_runs: list[Run]) -> dict[str, Any]:
    for run in study_runs:
        if "optuna.search_space" in run.data.tags:
            return dict(json.loads(run.data.tags["optuna.search_space"]))
    return {}


def _varying_params(trial_runs: list[Run]) -> list[str]:
    keys = {k for r in trial_runs for k in r.data.params if k != "trial_number"}
    return sorted(k for k in keys if len({r.data.params.get(k) for r in trial_runs}) > 1)


def _trial_row(client: MlflowClient, run: Run, searched: list[str]) -> dict[str, Any]:
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    planned = _int(params.get("train.epochs")) * _int(params.get("data.folds"))
    start, end = run.info.start_time, run.info.end_time or run.info.start_time
    row: dict[str, Any] = {
        "trial": int(tags["optuna.trial"]),
        "state": tags.get("optuna.state", "RUNNING"),
        "value": metrics.get("objective", metrics.get("cv/val_acc_mean")),
        "cv_std": metrics.get("cv/val_acc_std"),
        "test_acc": metrics.get("test/acc"),
        "epochs_trained": int(metrics.get("epochs_trained", 0)),
        "epochs_planned": planned,
        "seconds": (end - start) / 1000.0,
        "start": pd.to_datetime(start, unit="ms"),
        "end": pd.to_datetime(end, unit="ms"),
        "worker": tags.get("optuna.worker", "") or "worker",
        "run_id": run.info.run_id,
        "run_url": _run_url(client, run),
    }
    row.update({key: _typed(params.get(key)) for key in searched})
    return row


def _fold_row(run: Run, trial_of: dict[str, int]) -> dict[str, Any]:
    return {
        "trial": trial_of[run.data.tags[PARENT_RUN_TAG]],
        "fold": run.info.run_name,
        "best_val_acc": run.data.metrics.get("best/val_acc"),
        "run_id": run.info.run_id,
    }


def epochs_spent_and_saved(trials: pd.DataFrame) -> tuple[int, int]:
    """Epochs the trials trained, and the epochs pruned trials did not train of their plan."""
    pruned = trials[trials["state"] == "PRUNED"]
    saved = int((pruned["epochs_planned"] - pruned["epochs_trained"]).clip(lower=0).sum())
    return int(trials["epochs_trained"].sum()), saved


def fold_histories(client: MlflowClient, folds: pd.DataFrame, trials: list[int]) -> pd.DataFrame:
    """Per-epoch ``val/acc`` of the folds of ``trials`` (one request per fold run)."""
    rows = []
    for _, fold in folds[folds["trial"].isin(trials)].iterrows():
        for metric in client.get_metric_history(fold["run_id"], SELECTION_METRIC):
            rows.append(
                {
                    "trial": fold["trial"],
                    "fold": fold["fold"],
                    "epoch": metric.step,
                    "val_acc": metric.value,
                }
            )
    return pd.DataFrame(rows, columns=["trial", "fold", "epoch", "val_acc"])


def _run_url(client: MlflowClient, run: Run) -> str:
    uri = client.tracking_uri
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


def _typed(text: str | None) -> Any:
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
