"""The ``explore`` run: a dataset's tables and pictures, its metrics and its dataset input."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema

from trainer.tracking.batching import metrics_at
from trainer.tracking.store import (
    breaks_unique_key,
    ensure_experiment,
    metric_key,
    open_client,
    quiet_transfers,
)

log = logging.getLogger(__name__)

CONTEXT = "explore"  # the dataset input's context (fits log theirs as "training")


def log_exploration(
    uri: str | None,
    experiment: str,
    run_name: str,
    folder: Path,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    dataset: pd.DataFrame,
    digest: str,
    source: Path,
) -> str:
    """Log one finished run holding ``folder``'s files as artifacts; return its id.

    ``dataset`` (one row per image) becomes the run's dataset input with the data digest,
    its folder as source and its columns as schema. A failure ends the run FAILED.
    """
    quiet_transfers()
    client = open_client(uri)
    run = client.create_run(ensure_experiment(client, experiment), run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        client.log_batch(
            run_id,
            metrics=metrics_at(metrics, step=0),
            params=[Param(metric_key(k), str(v)) for k, v in params.items()],
        )
        log_dataset(client, run_id, dataset, digest, source)
        client.log_artifacts(run_id, str(folder))
    except BaseException as error:
        _end_failed(client, run_id, error)
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    log.info("logged run %s (%s) to %s", run_name, run_id, client.tracking_uri)
    return str(run_id)


def log_dataset(
    client: MlflowClient,
    run_id: str,
    frame: pd.DataFrame,
    digest: str,
    source: Path,
    context: str = CONTEXT,
    text_columns: bool = False,
) -> None:
    """Record ``frame`` as the run's dataset input (name: the data folder, digest: the data's).

    ``text_columns``: every column holds strings, so the schema is given rather than inferred
    (MLflow's inference looks at every value: ~0.05 s per 2,000 rows, in every fit)."""
    with warnings.catch_warnings():  # "source can be interpreted...", integer-column hints
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(
            frame, source=str(source), targets="label", name=source.name, digest=digest[:36]
        )
        if text_columns:  # ``PandasDataset.schema`` is a cached property: this is its value
            dataset.__dict__["schema"] = Schema([ColSpec("string", str(c)) for c in frame])
        entity = dataset._to_mlflow_entity()
    tag = InputTag("mlflow.data.context", context)
    inputs = [DatasetInput(entity, [tag])]
    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as error:
        if not breaks_unique_key(error):
            raise
        # MLflow looks the dataset up, then inserts it: a second process logging the same new
        # dataset in between makes this insert break the table's unique key. The dataset exists
        # now, and logging an input again only links it (a real fault fails again, and raises).
        log.debug("logging dataset %s again after: %s", source.name, error)
        client.log_inputs(run_id, inputs)


def _end_failed(client: MlflowClient, run_id: str, error: BaseException) -> None:
    status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
    try:
        client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(run_id, status)
    except MlflowException as exc:  # keep the original error the one that surfaces
        log.warning("could not end run %s as %s: %s", run_id, status, exc)
