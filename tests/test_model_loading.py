"""Loading a logged model for ``trainer predict``: the embedded store's models are found without
MLflow exactly where MLflow finds them; other stores download three files, not the model."""

from __future__ import annotations

import shutil
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

import trainer.tracking
from trainer.errors import UserError
from trainer.model.checkpoint import METADATA, WEIGHTS
from trainer.tracking import loading, local_registry, tracking_uri
from trainer.tracking.local_registry import local_model_folder

from .models import log_model, make_checkpoint

IMAGE = np.full((12, 12, 3), 100, dtype=np.uint8)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A store where ``loading-test`` has versions 1 (deleted) and 2 (alias ``champion``) of one
    logged model; yields (database file, logged model URI)."""
    mp = pytest.MonkeyPatch()
    store = tmp_path_factory.mktemp("loading-store")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    try:
        uri = log_model(make_checkpoint(store / "ckpt", 12))
        client = MlflowClient(tracking_uri())
        for _ in range(2):
            version = mlflow.register_model(uri, "loading-test")
        client.set_registered_model_alias("loading-test", "champion", version.version)
        client.delete_model_version("loading-test", "1")
        yield str(store / "mlflow.db"), uri
    finally:
        mp.undo()


@pytest.fixture
def store(registered: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The registered store as the tracking URI; returns the logged model's URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{registered[0]}")
    return registered[1]


def mlflow_folder(uri: str) -> Path:
    underlying = ModelsArtifactRepository.get_underlying_uri(uri)
    return Path(urllib.parse.unquote(urllib.parse.urlparse(underlying).path))


@pytest.mark.parametrize("name", ["models:/loading-test@champion", "models:/loading-test/2"])
def test_the_embedded_store_gives_mlflows_folder(store: str, name: str) -> None:
    assert local_model_folder(name) == mlflow_folder(name)
    assert local_model_folder(store) == mlflow_folder(store)


def test_the_known_schema_revision_is_the_installed_mlflows(registered: tuple[str, str]) -> None:
    with sqlite3.connect(registered[0]) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in local_registry.KNOWN_REVISIONS, "check the queries, then add it"


@pytest.mark.parametrize(
    "name",
    [
        "models:/loading-test/1",  # deleted
        "models:/loading-test@latest",  # MLflow's own rule
        "models:/loading-test@nobody",
        "models:/other/1",
        "models:/loading-test/Production",
        "runs:/0123/model",
    ],
)
def test_what_only_mlflow_can_answer_is_left_to_it(store: str, name: str) -> None:
    assert local_model_folder(name) is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MLFLOW_WORKSPACE", "team"),
        ("MLFLOW_ENABLE_WORKSPACES", "true"),
        ("MLFLOW_REGISTRY_URI", "http://localhost:1"),
        ("MLFLOW_TRACKING_URI", "http://localhost:1"),
    ],
)
def test_other_stores_are_left_to_mlflow(
    store: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert local_model_folder("models:/loading-test@champion") is None


def test_an_unknown_schema_revision_is_left_to_mlflow(
    registered: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "mlflow.db"
    shutil.copy(registered[0], copy)
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'future'")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy}")
    assert local_model_folder("models:/loading-test@champion") is None


def test_the_default_store_is_the_trackers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert local_registry.embedded_database() is None  # no store yet: MLflow's error
    default = tracking_uri()
    (tmp_path / local_registry.EMBEDDED_DATABASE).touch()
    assert default == f"sqlite:///{local_registry.embedded_database()}"


def test_mlflows_download_fetches_three_files_and_predicts_the_same(
    store: str, tmp_path: Path
) -> None:
    fetched = loading.download_checkpoint("models:/loading-test@champion", tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["MLmodel", f"artifacts/ckpt/{METADATA}", f"artifacts/ckpt/{WEIGHTS}"]
    local = local_model_folder("models:/loading-test@champion")
    assert local is not None
    in_place = loading.checkpoint_in(local, "models:/loading-test@champion")
    assert fetched.meta == in_place.meta
    assert fetched.weights.read_bytes() == in_place.weights.read_bytes()


def test_a_foreign_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: {python_function: {loader_module: evil}}\n")
    with pytest.raises(UserError, match="is not a model logged by trainer"):
        loading.checkpoint_in(tmp_path, "models:/x@y")


@pytest.mark.parametrize("path", ["../outside", "/etc", "", ".", "a/../../b", "a\\..\\b"])
def test_a_checkpoint_path_outside_the_model_is_refused(tmp_path: Path, path: str) -> None:
    mlmodel = tmp_path / "MLmodel"
    mlmodel.write_text(
        f"flavors: {{python_function: {{artifacts: {{checkpoint: {{path: '{path}'}}}}}}}}\n"
    )
    assert loading.checkpoint_path(mlmodel) is None


def test_every_lazy_export_of_the_tracking_package_resolves() -> None:
    assert sorted(trainer.tracking.__all__) == sorted(trainer.tracking._HOMES)
    for name in trainer.tracking.__all__:
        assert getattr(trainer.tracking, name) is not None
