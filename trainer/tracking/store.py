"""Where runs go: the tracking URI, experiments, and keys MLflow accepts."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES

from trainer.interrupts import shield_methods
from trainer.remote import check_server
from trainer.tracking.names import EMBEDDED_STORE, SQLITE, sqlite_file

log = logging.getLogger(__name__)

PARENT_RUN_TAG = "mlflow.parentRunId"
MODEL_URI_TAG = "model_uri"  # the fit's logged model (models:/m-...)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # which view the MLflow UI opens an experiment on
TRAINING_KIND = "custom_model_development"  # the UI's value for model training
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
_UNIQUE_KEY = re.compile(r"unique|duplicate", re.IGNORECASE)  # SQLite, PostgreSQL, MySQL


@contextlib.contextmanager
def quiet(logger_name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Only messages of ``level`` and above from ``logger_name`` meanwhile."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def quiet_transfers() -> None:
    """No artifact progress bars (they flood logs and non-terminals), unless the user set it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri``, else SQLite in ``./mlruns``.

    A tracking server is checked once per process: if nothing answers, this fails in one line
    at once rather than after MLflow's minutes of retries (which are kept for a server that
    goes away later, e.g. while it restarts).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        if uri.startswith(("http://", "https://")):
            check_server(uri)
        return uri
    store = EMBEDDED_STORE.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE}{store / 'mlflow.db'}"


def is_database_uri(uri: str) -> bool:
    """Whether ``uri`` names a database MLflow writes to directly (SQLite, PostgreSQL, ...)."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower() in DATABASE_ENGINES


# Each call into a database store finishes before Ctrl-C or SIGTERM interrupts the main thread
# (``trainer.interrupts``). Calls to a server are not held up: a request leaves no lock behind.
_StoreClient = shield_methods(MlflowClient, lambda client: is_database_uri(client.tracking_uri))


def open_client(configured: str | None = None) -> MlflowClient:
    """A client of the tracking store ``tracking_uri(configured)`` names."""
    uri = tracking_uri(configured)
    database = sqlite_file(uri)
    if database is None or uri in _OPENED:
        return _StoreClient(uri)
    # MLflow creates a new SQLite store's tables when a process first opens it (here), and
    # processes opening a new store at once each migrate it: all but one fail (MLflow 3.17).
    with FileLock(_lock_beside(database)):
        client = _StoreClient(uri)
    _OPENED.add(uri)
    return client


_OPENED: set[str] = set()  # SQLite stores this process has opened (MLflow keeps them open)


def _lock_beside(database: Path) -> Path:
    """The lock file beside ``database``, or (its folder missing, which MLflow's own error
    then names) one in the temporary folder."""
    folder = database.parent if database.parent.is_dir() else Path(tempfile.gettempdir())
    return folder / f"{database.name}.open.lock"


def breaks_unique_key(error: MlflowException) -> bool:
    """Whether a store refused a write because a row with its key exists: another process
    inserted it between MLflow's look-up and its insert (the words of SQLite, PostgreSQL and
    MySQL, as a local store raises them and a tracking server relays them)."""
    return _UNIQUE_KEY.search(error.message) is not None


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside a SQLite store) if missing.

    It is marked a model-training experiment, so the MLflow UI opens it on its training runs
    rather than the GenAI overview (an existing experiment keeps a kind it already has).
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:
            try:
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            except MlflowException as error:
                if not breaks_unique_key(error):
                    raise  # else another process tagged it at the same moment
        return str(found.experiment_id)
    try:
        return str(
            client.create_experiment(
                name,
                artifact_location=_artifact_root(client),
                tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
            )
        )
    except MlflowException:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def running_runs(
    client: MlflowClient, experiment_id: str, parent_id: str | None, run_dir: Path | None
) -> list[str]:
    """A fit's runs still RUNNING in the store, children of ``parent_id`` and the one tagged
    with ``run_dir``: also one created just before an interrupt, whose id the fit never kept."""
    filters = [f"tags.`{PARENT_RUN_TAG}` = '{parent_id}'"] if parent_id else []
    if run_dir and "'" not in str(run_dir):
        filters.append(f"tags.run_dir = '{run_dir}'")
    try:
        found = [client.search_runs([experiment_id], f) for f in filters]
    except MlflowException as exc:
        log.warning("could not look for this fit's unfinished runs: %s", exc)
        return []
    return [r.info.run_id for runs in found for r in runs if r.info.status == "RUNNING"]


def _artifact_root(client: MlflowClient) -> str | None:
    database = sqlite_file(client.tracking_uri)
    if database is None:
        return None  # a server or database decides where artifacts go
    return (database.parent / "artifacts").resolve().as_uri()


def metric_key(name: str) -> str:
    """A metric or param key MLflow accepts (odd characters in class names become ``_``)."""
    return _KEY_CHARS.sub("_", name)
