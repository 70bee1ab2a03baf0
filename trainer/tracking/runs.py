"""Reproduce a logged fit: its config (execution mode pinned), its split file and its folds'
results, for ``trainer fit --from-run`` and for ``studies promote``'s refit of a trial."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainer.config import Config, apply_overrides, config_from_dict
from trainer.data.splits import split_dir
from trainer.errors import UserError
from trainer.runtime import select_device
from trainer.tracking.store import PARENT_RUN_TAG, open_client

log = logging.getLogger(__name__)


def config_from_run(
    run_id: str, overrides: list[str], client: MlflowClient | None = None
) -> tuple[Config, dict[str, str]]:
    """The config of a logged fit (with ``overrides``), ready to reproduce it, and its tags.

    The original's execution mode is pinned (``precision: auto`` measures again otherwise and
    may choose differently), and its split file is restored from the run if it is missing.
    ``client`` reads the run (default: the store at ``tracking_uri()``).
    """
    client = client or open_client()
    try:
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory() as scratch:
            logged = Path(client.download_artifacts(run_id, "config.yaml", scratch))
            raw = yaml.safe_load(logged.read_text())
    except (MlflowException, OSError) as exc:
        raise UserError(
            f"run {run_id} in {client.tracking_uri} is not a trainer fit with a logged config "
            "(use the parent run's id, not a fold's; set MLFLOW_TRACKING_URI to its store)"
        ) from exc
    tags = dict(run.data.tags)
    pinned = _pinned_execution(raw.get("runtime", {}), tags.get("device", ""))
    config = config_from_dict(apply_overrides(raw, [*pinned, *overrides]), source=f"run {run_id}")
    _restore_split_file(client, run_id, config, tags.get("data.split_file", ""))
    return config, tags


def fold_results(run_id: str, client: MlflowClient | None = None) -> list[dict[str, float]]:
    """The metrics each fold run of a logged fit ended with (``best/epoch``, ``best/val_acc``,
    ...), in fold order: what ``trainer.folds.refit_epochs`` reads of a fit's folds."""
    client = client or open_client()
    run = client.get_run(run_id)
    folds = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}' and tags.fold LIKE 'fold-%'",
    )
    if not folds:
        raise UserError(f"run {run_id} in {client.tracking_uri} has no fold runs")
    ordered = sorted(folds, key=lambda fold: int(fold.data.tags["fold"].removeprefix("fold-")))
    return [dict(fold.data.metrics) for fold in ordered]


def _pinned_execution(runtime: dict[str, Any], device: str) -> list[str]:
    words = device.split()
    if len(words) < 2 or words[0] != select_device(runtime.get("device", "auto")).type:
        return []
    pins = []
    if runtime.get("precision", "auto") == "auto":
        pins.append(f"runtime.precision={words[1]}")
    if runtime.get("channels_last", "auto") == "auto":
        pins.append(f"runtime.channels_last={str('channels_last' in words).lower()}")
    return pins


def _restore_split_file(client: MlflowClient, run_id: str, config: Config, name: str) -> None:
    folder = split_dir(config)
    if not name or (folder / name).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = client.download_artifacts(run_id, f"splits/{name}", scratch)
        except (MlflowException, OSError) as exc:
            raise UserError(f"run {run_id} has no split file artifact splits/{name}") from exc
        (folder / name).write_bytes(Path(local).read_bytes())
    log.info("restored split file %s from run %s", folder / name, run_id)
