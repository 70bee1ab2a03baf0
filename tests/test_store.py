"""Where runs go: the experiments the project creates open on their training runs in the UI."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from trainer.tracking.store import EXPERIMENT_KIND_TAG, TRAINING_KIND, ensure_experiment


def test_a_new_experiment_is_a_training_experiment(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "digits")
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert ensure_experiment(client, "digits") == experiment_id


def test_an_existing_experiment_gets_the_kind_once_and_keeps_its_own(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    plain = client.create_experiment("plain")
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    ensure_experiment(client, "plain"), ensure_experiment(client, "chosen")
    assert client.get_experiment(plain).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
