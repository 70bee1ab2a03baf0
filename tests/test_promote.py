"""`studies promote` and predicting from the registry, against a real store."""

from __future__ import annotations

import base64
import csv
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from studies.cli import main as studies
from studies.promote import PROMOTED_REFIT, REFIT_OF, promote
from studies.report.data import load_study
from trainer.cli import main as trainer
from trainer.errors import UserError

from .conftest import run_study_with_lrs, study_file
from .servers import background_server, free_port, venv_tool

pytestmark = pytest.mark.slow
MODEL = "digits-classifier"


def run_study(
    root: Path, digits_dir: Path, name: str, lr: float, seed: int = 1, **train: Any
) -> None:
    folder = root / name
    folder.mkdir()
    path = study_file(folder, digits_dir, name=name, n_trials=1, pruner={"type": "none"})
    raw = yaml.safe_load(path.read_text())
    raw["base"]["seed"] = seed
    raw["base"]["train"].update(train)
    raw["base"]["output"]["dir"] = str(root / "out")  # one split file for studies of one seed
    path.write_text(yaml.safe_dump(raw))
    run_study_with_lrs(path, root / "journal.log", [lr])


@pytest.fixture(scope="module")
def promoted(
    tmp_path_factory: pytest.TempPathFactory, digits_dir: Path, session_store: str
) -> Iterator[dict[str, object]]:
    """A weak and a strong study on the same data and holdout, promoted in turns."""
    root = tmp_path_factory.mktemp("promote")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", session_store)
        run_study(root, digits_dir, "weak", lr=1e-8)
        run_study(root, digits_dir, "strong", lr=1e-2)
        client = MlflowClient(session_store)
        steps = {}
        for step, (study, force) in enumerate(
            [("weak", False), ("strong", False), ("weak", False), ("weak", True)], 1
        ):
            assert (
                studies(["promote", study, "--model-name", MODEL, *(["--force"] if force else [])])
                == 0
            )
            steps[step] = str(client.get_model_version_by_alias(MODEL, "champion").version)
        yield {"root": root, "client": client, "champions": steps}


def test_aliases_follow_the_evidence(promoted: dict[str, object]) -> None:
    client = promoted["client"]
    assert isinstance(client, MlflowClient)
    assert promoted["champions"] == {1: "1", 2: "2", 3: "2", 4: "4"}
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "4"
    first, better, worse, forced = (
        client.get_model_version(MODEL, str(v)).tags for v in (1, 2, 3, 4)
    )
    assert first["decision"].startswith("champion: first version")
    assert float(better["challenger_holdout_acc"]) > float(better["champion_holdout_acc"])
    assert 0.0 <= float(better["mcnemar_p_value"]) <= 1.0
    assert worse["decision"] == "kept champion" and worse["compared_with_version"] == "2"
    assert forced["forced"] == "true" and forced["decision"].startswith("champion: forced")
    for tags in (first, better):
        assert {
            "study",
            "trial",
            "trial_run_id",
            "refit_run_id",
            "data_digest",
            "split_file",
            "holdout_acc",
        } <= set(tags)


def test_each_version_describes_itself_in_the_registry(promoted: dict[str, object]) -> None:
    client = promoted["client"]
    assert isinstance(client, MlflowClient)
    better = client.get_model_version(MODEL, "2")
    text = better.description
    assert "**strong trial 0**: `test_resnet` at 16 px" in text
    assert "images (all non-test data)" in text and "CV mean val accuracy" in text
    assert f"Holdout accuracy {float(better.tags['holdout_acc']):.4f}" in text
    assert "Decision: champion: holdout" in text and "Against version 1" in text
    first = client.get_model_version(MODEL, "1").description
    assert "Decision: champion: first version" in first and "Against" not in first


def test_the_promoted_trial_shows_its_holdout_accuracy(promoted: dict[str, object]) -> None:
    client = promoted["client"]
    assert isinstance(client, MlflowClient)
    tags = client.get_model_version(MODEL, "2").tags
    trial = client.get_run(tags["trial_run_id"])
    assert trial.data.metrics["test/acc"] == pytest.approx(float(tags["holdout_acc"]))
    assert trial.data.tags[PROMOTED_REFIT] == tags["refit_run_id"]
    board = load_study(client, "strong").trials
    assert board["test_acc"].iloc[0] == pytest.approx(float(tags["holdout_acc"]))


def test_refit_is_nested_under_the_trial_and_reused(promoted: dict[str, object]) -> None:
    client = promoted["client"]
    assert isinstance(client, MlflowClient)
    weak = client.get_model_version(MODEL, "1").tags
    experiment = client.get_run(weak["trial_run_id"]).info.experiment_id
    refits = client.search_runs(
        [experiment], filter_string=f"tags.`{REFIT_OF}` = '{weak['trial_run_id']}'"
    )
    assert len(refits) == 1  # versions 1, 3 and 4 share one refit
    assert refits[0].data.tags["mlflow.parentRunId"] == weak["trial_run_id"]
    assert client.get_model_version(MODEL, "3").tags["refit_run_id"] == refits[0].info.run_id


def test_alias_predictions_equal_the_refit_holdout_predictions(
    promoted: dict[str, object], digits_dir: Path, tmp_path: Path
) -> None:
    client = promoted["client"]
    assert isinstance(client, MlflowClient)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    local = client.download_artifacts(
        champion.tags["predictions_run_id"], "test_predictions.csv", str(tmp_path)
    )
    with open(local) as handle:
        holdout = list(csv.DictReader(handle))
    images = [str(digits_dir / row["path"]) for row in holdout]
    out = tmp_path / "alias.csv"
    assert (
        trainer(["predict", "--model", f"models:/{MODEL}@champion", *images, "--out", str(out)])
        == 0
    )
    assert [r["predicted"] for r in csv.DictReader(out.open())] == [r["predicted"] for r in holdout]


def test_another_holdout_is_refused(promoted: dict[str, object], digits_dir: Path) -> None:
    root = promoted["root"]
    assert isinstance(root, Path)
    run_study(root, digits_dir, "other-split", lr=1e-2, seed=2)
    with pytest.raises(UserError, match="scored on another holdout"):
        promote("other-split", MODEL)


def test_served_champion_answers_invocations(
    promoted: dict[str, object], digits_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [
        venv_tool("mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # `mlflow models serve` execs uvicorn from PATH: the venv's bin, as when it is activated
    env = {
        **os.environ,
        "PATH": f"{Path(venv_tool('mlflow')).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    images = sorted(digits_dir.rglob("*.png"))[::9]
    body = {
        "dataframe_split": {
            "columns": ["image"],
            "data": [[base64.b64encode(p.read_bytes()).decode()] for p in images],
        }
    }
    with background_server(command, f"http://127.0.0.1:{port}/ping", env=env):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    served = [row["predicted"] for row in answer["predictions"]]
    out = tmp_path / "served.csv"
    assert (
        trainer(
            [
                "predict",
                "--model",
                f"models:/{MODEL}@champion",
                *map(str, images),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert served == [r["predicted"] for r in csv.DictReader(out.open())]


def test_promotion_refits_for_train_refit_epochs(
    digits_dir: Path, tmp_path: Path, session_store: str
) -> None:
    """The refit length a study's base config sets is the one promotion trains (it used to be
    ignored: promotion had its own copy of the trainer's refit-epoch rule)."""
    run_study(tmp_path, digits_dir, "refit-epochs", lr=1e-2, epochs=1, refit_epochs=2)
    version = promote("refit-epochs", "refit-epochs-model")
    client = MlflowClient(session_store)
    refit = client.get_run(version.tags["predictions_run_id"])
    assert refit.info.run_name == "refit"
    assert refit.data.metrics["epochs_trained"] == 2
    assert len(client.get_metric_history(refit.info.run_id, "train/loss")) == 2
