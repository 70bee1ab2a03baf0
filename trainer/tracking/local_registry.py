"""Where a registered or logged model lies in the embedded store, found without MLflow.

``trainer predict --model models:/NAME@champion`` on the embedded SQLite store would spend
more time importing MLflow and building its SQLAlchemy store (2-5 s of CPU on 2 cores, half
the time of importing torch and timm) than predicting. This module reads the same two rows
MLflow reads, from the same SQLite file opened read-only, and returns the model's local
folder. It answers only where that answer is MLflow's own:

- the tracking URI is the embedded store's (``MLFLOW_TRACKING_URI`` a local ``sqlite:///``
  file, or unset: ``mlruns/mlflow.db``), no other registry URI is set, and workspaces are off;
- the store's schema revision is one these queries were checked against (``KNOWN_REVISIONS``;
  a test compares both answers on a store that the installed MLflow creates, and fails when
  an MLflow upgrade changes the revision);
- the URI is ``models:/NAME@ALIAS`` (not MLflow's special ``latest``), ``models:/NAME/N`` or
  ``models:/m-<id>``, and what it names exists, is live and lies in a local folder.

Anything else returns ``None`` (the caller asks MLflow, which also words any error). The
folder is then only read, with the same checks as a downloaded model.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import urllib.parse
from pathlib import Path

from trainer.tracking.names import EMBEDDED_DATABASE, sqlite_file

# alembic revisions of MLflow's store schema that the queries below were checked against
KNOWN_REVISIONS = frozenset({"dc11669786a5"})  # MLflow 3.17
DEFAULT_WORKSPACE = "default"
DELETED_STAGE = "Deleted_Internal"  # mlflow.entities.model_registry.model_version_stages
_ALIAS = re.compile(r"models:/([^/@?#]+)@([^/@?#]+)")
_VERSION = re.compile(r"models:/([^/@?#]+)/(\d+)")
_LOGGED = re.compile(r"models:/(m-[0-9a-f]{32})")


def local_model_folder(uri: str) -> Path | None:
    """The local folder of the model ``uri`` names in the embedded store, or ``None`` where
    only MLflow can answer (see the module docstring)."""
    database = embedded_database()
    if database is None or _workspaces_on():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=2.0)
        ) as connection:
            location = _download_location(connection, uri)
    except sqlite3.Error:
        return None
    return _local_folder(location) if location else None


def embedded_database() -> Path | None:
    """The SQLite file of the tracking store, if it is a local one that exists."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{EMBEDDED_DATABASE.resolve()}"
    registry = os.environ.get("MLFLOW_REGISTRY_URI")
    if registry and registry != uri:
        return None
    path = sqlite_file(uri)
    if path is None or "?" in uri or "#" in uri:
        return None
    return path.resolve() if path.is_file() else None


def _workspaces_on() -> bool:
    enabled = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("true", "1")
    return enabled or bool(os.environ.get("MLFLOW_WORKSPACE"))


def _download_location(connection: sqlite3.Connection, uri: str) -> str | None:
    """MLflow's download location of the model (``storage_location or source`` of a registered
    version, ``artifact_location`` of a logged model), or ``None``."""
    revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    if revision is None or revision[0] not in KNOWN_REVISIONS:
        return None
    if logged := _LOGGED.fullmatch(uri):
        return _one(
            connection,
            "SELECT artifact_location FROM logged_models WHERE model_id = ?"
            " AND lifecycle_stage = 'active'",
            logged[1],
        )
    if version := _VERSION.fullmatch(uri):
        name, number = version[1], int(version[2])
    elif (alias := _ALIAS.fullmatch(uri)) and alias[2].lower() != "latest":
        name = alias[1]
        found = _one(
            connection,
            "SELECT version FROM registered_model_aliases"
            " WHERE workspace = ? AND name = ? AND alias = ?",
            DEFAULT_WORKSPACE,
            name,
            alias[2],
        )
        if found is None:
            return None
        number = int(found)
    else:
        return None
    return _one(
        connection,
        "SELECT coalesce(nullif(storage_location, ''), source) FROM model_versions"
        " WHERE workspace = ? AND name = ? AND version = ? AND current_stage != ?"
        " AND status = 'READY'",
        DEFAULT_WORKSPACE,
        name,
        number,
        DELETED_STAGE,
    )


def _one(connection: sqlite3.Connection, query: str, *values: object) -> str | None:
    row = connection.execute(query, values).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _local_folder(location: str) -> Path | None:
    """A ``file:`` URI or absolute path as an existing local folder, else ``None``."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        folder = Path(urllib.parse.unquote(parsed.path))
    elif not parsed.scheme and os.path.isabs(location):
        folder = Path(location)
    else:
        return None
    return folder if folder.is_dir() else None
