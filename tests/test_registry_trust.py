"""Loading a registered model never executes it: weights and JSON only, other models refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel
from PIL import Image

from trainer.cli import main
from trainer.tracking import ensure_experiment, tracking_uri

from .models import log_model, make_checkpoint


class Payload(PythonModel):
    """A pyfunc model whose pickle creates ``marker`` when it is loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))

    def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> object:
        return model_input


def register(model_uri: str, name: str) -> None:
    client = MlflowClient(tracking_uri())
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, "champion", version.version)


def test_a_foreign_model_is_refused_and_never_unpickled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    client = MlflowClient(tracking_uri())
    run = client.create_run(ensure_experiment(client, "foreign"))
    mlflow.set_tracking_uri(tracking_uri())
    with mlflow.start_run(run_id=run.info.run_id):
        logged = mlflow.pyfunc.log_model(
            name="model", python_model=Payload(str(marker)), pip_requirements=["mlflow"]
        )
    register(logged.model_uri, "foreign")
    marker.unlink(missing_ok=True)  # in case logging loaded the model to check it
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the model is refused first
    capsys.readouterr()
    code = main(["predict", "--model", "models:/foreign@champion", str(image)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1
    error = errors[0]
    assert "models:/foreign@champion is not a model logged by trainer" in error
    assert not marker.exists()
    with pytest.raises(AttributeError):  # the payload is a file object, not a model
        mlflow.pyfunc.load_model("models:/foreign@champion")
    assert marker.exists()  # the pyfunc loader ran the payload: the check above could fail


def test_a_registered_trainer_model_loads_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(log_model(make_checkpoint(tmp_path / "model", 16)), "ours")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling while loading a model")

    for module, name in ((pickle, "load"), (pickle, "loads"), (cloudpickle, "load")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", forbidden)
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20, 3), 128, dtype=np.uint8)).save(image)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", "models:/ours@champion", str(image), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1
