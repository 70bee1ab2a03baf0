"""MLflow tracking, checked by querying the store with MlflowClient, not the trainer's objects."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from trainer.callbacks import Callback, FoldInfo
from trainer.cli import main
from trainer.config import Config, flatten
from trainer.fit import fit
from trainer.metrics import EPOCH_METRICS, TRAIN_NAMES
from trainer.model.checkpoint import find_checkpoint
from trainer.predict import Predictor
from trainer.tracking import MlflowTracker
from trainer.tracking.writer import TrackingWriteError

from .conftest import small_config


def tracked_fit(config: Config, extra: list[Callback] | None = None) -> None:
    fit(config, [MlflowTracker(config.tracking, config.experiment), *(extra or [])])


def runs_by_name(client: MlflowClient, experiment: str) -> dict[str, Run]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    return {run.info.run_name: run for run in runs}


def parent_and_children(client: MlflowClient, experiment: str) -> tuple[Run, dict[str, Run]]:
    runs = runs_by_name(client, experiment).values()
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    return parents[0], children


@pytest.fixture
def tracked(store: MlflowClient, digits_dir: Path, tmp_path: Path) -> tuple[MlflowClient, Config]:
    config = small_config(digits_dir, tmp_path / "out", train={"epochs": 2, "refit": True})
    tracked_fit(config)
    return store, config


def test_run_tree_metrics_params_and_artifacts(tracked: tuple[MlflowClient, Config]) -> None:
    client, config = tracked
    parent, children = parent_and_children(client, config.experiment)
    assert set(children) == {"fold-0", "fold-1", "refit"}
    assert all(r.info.status == "FINISHED" for r in [parent, *children.values()])
    assert parent.data.params == {k: str(v) for k, v in flatten(config.to_dict()).items()}
    for name in ("fold-0", "fold-1"):
        run_id = children[name].info.run_id
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            assert steps == [0, 1], (name, key)
        assert {"best/val_acc", "best/epoch"} <= set(children[name].data.metrics)
        files = {a.path for a in client.list_artifacts(run_id)} | {
            a.path
            for folder in ("checkpoint", "plots")
            for a in client.list_artifacts(run_id, folder)
        }
        assert {
            "checkpoint/model.safetensors",
            "checkpoint/model.json",
            "val_predictions.csv",
            "plots/confusion_matrix.html",
        } <= files
    refit_plots = {a.path for a in client.list_artifacts(children["refit"].info.run_id, "plots")}
    assert refit_plots == {"plots/confusion_matrix.html"}  # HTML only: the UI shows it inline
    assert {"cv/val_acc_mean", "cv/val_acc_std", "cv/best_epoch_mean", "test/acc"} <= set(
        parent.data.metrics
    )
    tags = parent.data.tags
    assert {"git.commit", "version.torch", "device", "host", "data.digest", "data.n_images"} <= set(
        tags
    )
    assert tags["data.class_names"] == "0,1,2" and tags["data.n_classes"] == "3"
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "summary.json", "splits", "plots"} <= top
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/learning_curves.png" in plots
    galleries = {a.path for a in client.list_artifacts(parent.info.run_id, "galleries")}
    # likely label errors are drawn while the refit trains, its mistakes after it
    assert {"galleries/label_issues.png", "galleries/misclassified.png"} <= galleries
    [dataset] = parent.inputs.dataset_inputs
    assert dataset.dataset.digest == tags["data.digest"][:36]
    [split_file] = Path(client.download_artifacts(parent.info.run_id, "splits")).iterdir()
    split = pd.read_csv(split_file, dtype=str)
    assert json.loads(dataset.dataset.profile)["num_rows"] == len(split)
    # the schema is given, not inferred: the same as MLflow's own inference of such a table
    inferred = mlflow.data.from_pandas(split[["path", "label"]].assign(split="x"), digest="x")
    assert dataset.dataset.schema == inferred._to_mlflow_entity().schema


def test_fold_checkpoint_artifact_reproduces_logged_accuracy(
    tracked: tuple[MlflowClient, Config], digits_dir: Path, tmp_path: Path
) -> None:
    client, config = tracked
    _, children = parent_and_children(client, config.experiment)
    fold = children["fold-1"]
    local = Path(client.download_artifacts(fold.info.run_id, "", str(tmp_path / "dl")))
    rows = list(csv.DictReader((local / "val_predictions.csv").open()))
    predictor = Predictor(find_checkpoint(local / "checkpoint"), device="cpu")
    probs = predictor.predict_proba([digits_dir / row["path"] for row in rows])
    labels = [predictor.class_names[i] for i in probs.argmax(axis=1)]
    accuracy = float(np.mean([p == r["label"] for p, r in zip(labels, rows, strict=True)]))
    assert accuracy == fold.data.metrics["best/val_acc"]


def test_logged_model_predicts_like_the_trainer(
    tracked: tuple[MlflowClient, Config], digits_dir: Path
) -> None:
    client, config = tracked
    parent, _ = parent_and_children(client, config.experiment)
    images = sorted(digits_dir.rglob("*.png"))[::7]
    model = mlflow.pyfunc.load_model(
        f"runs:/{parent.info.run_id}/model", model_config={"tracking.serve_paths": True}
    )
    served = model.predict(pd.DataFrame({"image": [str(p) for p in images]}))
    refit_dir = Path(parent.data.tags["run_dir"]) / "refit"
    expected = Predictor(find_checkpoint(refit_dir), device="cpu").predict_proba(images)
    names = ["0", "1", "2"]
    assert list(served["predicted"]) == [names[i] for i in expected.argmax(axis=1)]
    assert np.allclose(served[[f"prob_{c}" for c in names]].to_numpy(), expected, atol=1e-6)
    assert model.metadata.signature.inputs.input_names() == ["image"]
    logged = client.get_logged_model(parent.data.tags["model_uri"].removeprefix("models:/"))
    assert {"test/acc", "cv/val_acc_mean"} <= {m.key for m in logged.metrics or []}
    # MLflow's own check of the serving example is off at log time; this is it, once
    local = Path(mlflow.artifacts.download_artifacts(parent.data.tags["model_uri"]))
    example = json.loads((local / "serving_input_example.json").read_text())
    answer = model.predict(pd.DataFrame(**example["dataframe_split"]))
    assert len(answer) == 1 and answer["predicted"][0] in names


@pytest.mark.parametrize("interrupted_call", [1, 3], ids=["fit run", "fold-1 run"])
def test_interrupt_while_a_run_is_created_leaves_no_run_running(
    store: MlflowClient,
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    interrupted_call: int,
) -> None:
    # the signal lands after the store created the run, before the tracker kept its id
    create, calls = MlflowClient.create_run, {"n": 0}

    def create_then_interrupt(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        run = create(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == interrupted_call:
            raise KeyboardInterrupt
        return run

    monkeypatch.setattr(MlflowClient, "create_run", create_then_interrupt)
    config = small_config(digits_dir, tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        tracked_fit(config)
    experiment = store.get_experiment_by_name(config.experiment)
    assert experiment is not None
    status = {r.info.run_name: r.info.status for r in store.search_runs([experiment.experiment_id])}
    assert len(status) == interrupted_call and "RUNNING" not in status.values()
    assert [name for name, state in status.items() if state != "KILLED"] == (
        ["fold-0"] if interrupted_call == 3 else []  # it had ended before the interrupt
    )


def test_crash_mid_epoch_leaves_runs_failed(
    store: MlflowClient, digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.data.loader import ImageSubset

    calls = {"n": 0}
    original = ImageSubset.__getitem__

    def failing(self: ImageSubset, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # second batch of the first epoch
            raise OSError("disk went away")
        return original(self, batch)

    monkeypatch.setattr(ImageSubset, "__getitem__", failing)
    searches = {"n": 0}
    search = MlflowClient.search_runs

    def counted_search(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        searches["n"] += 1
        return search(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", counted_search)
    config = small_config(digits_dir, tmp_path / "out")
    with pytest.raises(OSError, match="disk went away"):
        tracked_fit(config)
    # every run's id was kept, so they are ended without searching the store (as a pruned
    # trial's are: that query was part of each pruned trial's fixed cost)
    assert searches["n"] == 0
    parent, children = parent_and_children(store, config.experiment)
    assert parent.info.status == "FAILED" and children["fold-0"].info.status == "FAILED"
    assert "disk went away" in children["fold-0"].data.tags["error"]


def test_interrupt_leaves_runs_killed(
    store: MlflowClient, digits_dir: Path, tmp_path: Path
) -> None:
    class CtrlC(Callback):
        def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
            raise KeyboardInterrupt

    config = small_config(digits_dir, tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        tracked_fit(config, [CtrlC()])
    parent, children = parent_and_children(store, config.experiment)
    assert parent.info.status == "KILLED" and children["fold-0"].info.status == "KILLED"
    # the epoch the tracker was given before the interrupt is written, not held back
    history = store.get_metric_history(children["fold-0"].info.run_id, TRAIN_NAMES["loss"])
    assert [m.step for m in history] == [0]


def epoch_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[set[int]]]:
    """Records, per run, the epochs (steps) of each store write that carried epoch metrics."""
    writes: dict[str, list[set[int]]] = {}
    log_batch = MlflowClient.log_batch

    def recorded(self: MlflowClient, run_id: str, metrics: Any = (), **rest: Any) -> Any:
        steps = {m.step for m in metrics if m.key == TRAIN_NAMES["loss"]}
        if steps:
            writes.setdefault(run_id, []).append(steps)
        return log_batch(self, run_id, metrics=metrics, **rest)

    monkeypatch.setattr(MlflowClient, "log_batch", recorded)
    return writes


@pytest.mark.parametrize(("seconds", "expected"), [(600.0, [{0, 1, 2}]), (0.0, [{0}, {1}, {2}])])
def test_epoch_metrics_are_written_in_batches_of_at_most_metrics_seconds(
    store: MlflowClient,
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seconds: float,
    expected: list[set[int]],
) -> None:
    writes = epoch_writes(monkeypatch)
    settings = {"metrics_seconds": seconds, "plots": False, "log_model": False}
    config = small_config(digits_dir, tmp_path / "out", train={"epochs": 3}, tracking=settings)
    tracked_fit(config)
    _, children = parent_and_children(store, config.experiment)
    assert set(children) == {"fold-0", "fold-1"}
    for run in children.values():
        assert writes[run.info.run_id] == expected  # short epochs: one write with the results
        for key in EPOCH_METRICS:
            history = store.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == [0, 1, 2], key


def test_tracking_switch_off_logs_nothing(
    store: MlflowClient, digits_dir: Path, tmp_path: Path
) -> None:
    config = small_config(digits_dir, tmp_path / "out", tracking=False)
    assert config.tracking.enabled is False
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["fit", str(path)]) == 0
    assert store.get_experiment_by_name(config.experiment) is None


def test_from_run_reproduces_epoch_metrics(
    store: MlflowClient,
    digits_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import yaml

    config = small_config(
        digits_dir, tmp_path / "out", train={"epochs": 2}, tracking={"log_model": False}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["fit", str(path)]) == 0
    [original] = [
        r
        for r in runs_by_name(store, config.experiment).values()
        if "mlflow.parentRunId" not in r.data.tags
    ]
    split_file = tmp_path / "out" / "splits" / original.data.tags["data.split_file"]
    split_file.unlink()  # the reproduction must restore it from the run's artifacts
    assert main(["fit", "--from-run", original.info.run_id]) == 0
    assert split_file.exists()
    parents = [
        r
        for r in store.search_runs([original.info.experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(parents) == 2
    [copy] = [p for p in parents if p.info.run_id != original.info.run_id]

    def val_acc(parent_id: str) -> dict[str, list[float]]:
        children = [
            r
            for r in store.search_runs([original.info.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") == parent_id
        ]
        return {
            c.info.run_name: [
                m.value
                for m in sorted(
                    store.get_metric_history(c.info.run_id, "val/acc"), key=lambda m: m.step
                )
            ]
            for c in children
        }

    assert val_acc(copy.info.run_id) == val_acc(original.info.run_id)
    assert len(val_acc(copy.info.run_id)["fold-0"]) == 2


def test_logged_model_takes_base64_images_and_arrays(
    tracked: tuple[MlflowClient, Config], digits_dir: Path
) -> None:
    from trainer.data.images import encode_png_base64, read_rgb

    client, config = tracked
    parent, _ = parent_and_children(client, config.experiment)
    model = mlflow.pyfunc.load_model(
        f"runs:/{parent.info.run_id}/model", model_config={"tracking.serve_paths": True}
    )
    images = sorted(digits_dir.rglob("*.png"))[:5]
    by_path = model.predict(pd.DataFrame({"image": [str(p) for p in images]}))
    arrays = [read_rgb(p) for p in images]
    by_base64 = model.predict(pd.DataFrame({"image": [encode_png_base64(a) for a in arrays]}))
    by_array = model.unwrap_python_model().classify(arrays)
    assert list(by_path["predicted"]) == list(by_base64["predicted"]) == list(by_array["predicted"])


@pytest.mark.parametrize(
    ("mode", "expected"), [("all", {"epoch-000", "epoch-001"}), ("none", set())]
)
def test_log_checkpoints_all_and_none(
    store: MlflowClient, digits_dir: Path, tmp_path: Path, mode: str, expected: set[str]
) -> None:
    config = small_config(
        digits_dir,
        tmp_path / "out",
        train={"epochs": 2},
        tracking={"log_checkpoints": mode, "log_model": False, "plots": False},
    )
    tracked_fit(config)
    _, children = parent_and_children(store, config.experiment)
    run_id = children["fold-0"].info.run_id
    top = {a.path for a in store.list_artifacts(run_id)}
    epochs = {Path(a.path).name for a in store.list_artifacts(run_id, "checkpoints")}
    assert epochs == expected
    assert ("checkpoint" in top) == (mode != "none")
    if mode == "all":
        files = {Path(a.path).name for a in store.list_artifacts(run_id, "checkpoints/epoch-001")}
        assert files == {"model.safetensors", "model.json"}


def test_failure_while_finishing_leaves_no_run_running(
    store: MlflowClient, digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer import plots

    def broken(*_: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "learning_curves", broken)
    config = small_config(digits_dir, tmp_path / "out", tracking={"log_model": False})
    with pytest.raises(TrackingWriteError, match=r"figures .* plotting failed"):
        tracked_fit(config)
    parent, children = parent_and_children(store, config.experiment)
    assert parent.info.status == "FAILED"
    assert {c.info.status for c in children.values()} == {"FINISHED"}


@pytest.mark.parametrize("enabled", [True, False])
def test_training_runs_carry_system_metrics(
    store: MlflowClient, digits_dir: Path, tmp_path: Path, enabled: bool
) -> None:
    settings = {"system_metrics": enabled, "system_metrics_seconds": 0.1, "plots": False}
    config = small_config(digits_dir, tmp_path / "out", train={"epochs": 3}, tracking=settings)
    tracked_fit(config)
    parent, children = parent_and_children(store, config.experiment)
    for fold in children.values():
        system = [k for k in fold.data.metrics if k.startswith("system/")]
        if enabled:
            assert "system/cpu_utilization_percentage" in system
            assert "system/system_memory_usage_megabytes" in system
        else:
            assert system == []
    assert not [k for k in parent.data.metrics if k.startswith("system/")]
