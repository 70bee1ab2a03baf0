"""Names the tracking modules share, importable without importing mlflow (``trainer predict``
reads a registered model without it)."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_STORE = Path("mlruns")  # the embedded store, relative to the working directory
EMBEDDED_DATABASE = EMBEDDED_STORE / "mlflow.db"  # its SQLite file
CHECKPOINT_ARTIFACT = "checkpoint"  # the pyfunc artifact holding model.safetensors + model.json
SQLITE = "sqlite:///"  # how a tracking URI names a local SQLite file


def sqlite_file(uri: str) -> Path | None:
    """The database file a ``sqlite:///`` tracking URI names (None for any other store)."""
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None
