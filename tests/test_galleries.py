"""Pictures of predictions: the rankings on synthetic predictions, and the galleries a tracked
fit logs, checked against the predictions files in the store."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from trainer.config import Config
from trainer.fit import fit
from trainer.fold_results import read_predictions
from trainer.galleries import label_issues, misclassified, write_galleries
from trainer.tracking import MlflowTracker

from .conftest import small_config

CLASSES = ("cat", "dog", "bird")


def predictions(rows: list[tuple[str, str, dict[str, float]]]) -> pd.DataFrame:
    """A predictions table as ``write_predictions`` lays it out: (path, label, probabilities)."""
    frame = pd.DataFrame(
        [
            {
                "path": path,
                "label": label,
                "predicted": max(probs, key=probs.__getitem__),
                **{f"prob_{c}": probs.get(c, 0.0) for c in CLASSES},
            }
            for path, label, probs in rows
        ]
    )
    return frame


def confident(prefix: str, count: int, rng: np.random.Generator) -> list[tuple[str, str, dict]]:
    """Images the model agrees with: their label gets 0.8-0.99."""
    rows = []
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        p = float(rng.uniform(0.8, 0.99))
        others = [c for c in CLASSES if c != label]
        rows.append((f"{label}/{prefix}{index}.png", label, {label: p, others[0]: 1 - p}))
    return rows


def test_self_confidence_puts_a_planted_mislabel_first() -> None:
    rng = np.random.default_rng(0)
    planted = ("cat/really_a_dog.png", "cat", {"cat": 0.01, "dog": 0.97, "bird": 0.02})
    unsure = ("dog/blurry.png", "dog", {"dog": 0.40, "cat": 0.35, "bird": 0.25})  # right, unsure
    near_miss = ("bird/odd.png", "bird", {"bird": 0.30, "dog": 0.70})  # wrong, not by much
    folds = {
        "fold-0": predictions([*confident("a", 10, rng), unsure]),
        "fold-1": predictions([*confident("b", 10, rng), planted]),
        "fold-2": predictions([*confident("c", 10, rng), near_miss]),
    }
    ranked = label_issues(folds, limit=5)
    assert len(ranked) == 5
    first = ranked.iloc[0]
    assert (first["path"], first["label"], first["predicted"]) == (
        "cat/really_a_dog.png",
        "cat",
        "dog",
    )
    assert first["self_confidence"] == pytest.approx(0.01)
    assert first["confidence"] == pytest.approx(0.97)
    assert (first["fold"], first["rank"]) == ("fold-1", 1)
    assert list(ranked["path"][1:3]) == ["bird/odd.png", "dog/blurry.png"]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert ranked["self_confidence"].is_monotonic_increasing


def test_an_image_predicted_in_two_folds_is_refused() -> None:
    row = ("cat/x.png", "cat", {"cat": 0.9, "dog": 0.1})
    with pytest.raises(ValueError, match=r"cat/x\.png has predictions from more than one fold"):
        label_issues({"fold-0": predictions([row]), "fold-1": predictions([row])})


def test_misclassified_most_confused_pair_first_then_most_confident() -> None:
    rows = [
        ("cat/1.png", "cat", {"cat": 0.1, "dog": 0.6, "bird": 0.3}),
        ("cat/2.png", "cat", {"cat": 0.05, "dog": 0.95}),
        ("cat/3.png", "cat", {"cat": 0.2, "dog": 0.8}),
        ("dog/1.png", "dog", {"dog": 0.1, "bird": 0.9}),  # a more confident, rarer mistake
        ("dog/2.png", "dog", {"dog": 0.9, "cat": 0.1}),  # right
        ("bird/1.png", "bird", {"bird": 0.7, "cat": 0.3}),  # right
    ]
    wrong = misclassified(predictions(rows))
    assert list(wrong["path"]) == ["cat/2.png", "cat/3.png", "cat/1.png", "dog/1.png"]
    assert list(wrong["pair_count"]) == [3, 3, 3, 1]
    assert list(wrong["predicted"]) == ["dog", "dog", "dog", "bird"]
    assert wrong["confidence"].tolist() == pytest.approx([0.95, 0.8, 0.6, 0.9])
    assert wrong["self_confidence"].tolist() == pytest.approx([0.05, 0.2, 0.1, 0.1])
    assert list(misclassified(predictions(rows), limit=2)["path"]) == ["cat/2.png", "cat/3.png"]


def test_one_fold_gives_no_label_errors_gallery(tmp_path: Path) -> None:
    """A single validation split covers only part of the images: no out-of-fold ranking."""
    table = predictions([("cat/1.png", "cat", {"cat": 0.2, "dog": 0.8})])
    table.to_csv(tmp_path / "val.csv", index=False)
    table.to_csv(tmp_path / "test.csv", index=False)
    summary = {
        "folds": [{"name": "fold-0", "predictions": str(tmp_path / "val.csv")}],
        "refit": {"predictions": str(tmp_path / "test.csv")},
    }
    written = write_galleries(summary, tmp_path / "images-gone", tmp_path / "out")
    assert sorted(p.name for p in written) == ["misclassified.csv", "misclassified.png"]
    assert write_galleries({"folds": summary["folds"]}, tmp_path, tmp_path / "none") == []


def test_a_predictions_file_is_parsed_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The confusion matrix and the gallery read the same file: one parse, private copies."""
    path = tmp_path / "val.csv"
    predictions([("cat/1.png", "cat", {"cat": 0.9, "dog": 0.1})]).to_csv(path, index=False)
    parses = []
    real_read_csv = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: parses.append(a) or real_read_csv(*a, **k))
    first = read_predictions(path)
    first.loc[0, "label"] = "changed by a caller"
    assert read_predictions(path).loc[0, "label"] == "cat"
    assert len(parses) == 1
    rewritten = [("cat/1.png", "cat", {"cat": 0.2, "dog": 0.8}), ("dog/2.png", "dog", {"dog": 1})]
    predictions(rewritten).to_csv(path, index=False)
    assert read_predictions(path)["predicted"].tolist() == ["dog", "dog"]
    assert len(parses) == 2


# -- a tracked fit ---------------------------------------------------------------------------


def fit_runs(client: MlflowClient, config: Config) -> tuple[str, dict[str, str]]:
    """Fit with the tracker; the parent run id and its children's ids by name."""
    fit(config, [MlflowTracker(config.tracking, config.experiment)])
    experiment = client.get_experiment_by_name(config.experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, {r.info.run_name: r.info.run_id for r in runs if r.info.run_id != parent}


def artifact_table(client: MlflowClient, run_id: str, path: str, scratch: Path) -> pd.DataFrame:
    """A predictions file, or a gallery's CSV (text columns as text, scores as numbers)."""
    local = client.download_artifacts(run_id, path, str(scratch))
    if path.startswith("galleries/"):
        text = dict.fromkeys(["path", "label", "predicted", "fold"], str)
        return pd.read_csv(local, dtype=text, keep_default_na=False)
    return read_predictions(local)


def test_fit_logs_both_galleries_matching_its_predictions(
    store: MlflowClient, digits_dir: Path, tmp_path: Path
) -> None:
    config = small_config(
        digits_dir, tmp_path / "out", train={"refit": True}, tracking={"log_model": False}
    )
    parent, children = fit_runs(store, config)
    listed = {a.path for a in store.list_artifacts(parent, "galleries")}
    assert listed == {
        f"galleries/{name}.{kind}"
        for name in ("misclassified", "label_issues")
        for kind in ("png", "csv")
    }
    scratch = tmp_path / "scratch"
    holdout = artifact_table(store, children["refit"], "test_predictions.csv", scratch)
    wrong = artifact_table(store, parent, "galleries/misclassified.csv", scratch)
    expected = holdout[holdout["label"] != holdout["predicted"]]
    assert 0 < len(wrong) == min(len(expected), 48)
    truth = holdout.set_index("path")
    assert (wrong["label"] == truth.loc[wrong["path"], "label"].to_numpy()).all()
    assert (wrong["predicted"] == truth.loc[wrong["path"], "predicted"].to_numpy()).all()
    assert wrong["pair_count"].is_monotonic_decreasing

    out_of_fold = pd.concat(
        artifact_table(store, children[f"fold-{k}"], "val_predictions.csv", scratch / str(k))
        for k in range(2)
    ).set_index("path")
    issues = artifact_table(store, parent, "galleries/label_issues.csv", scratch)
    given = [
        out_of_fold.at[p, f"prob_{label}"]
        for p, label in zip(issues["path"], issues["label"], strict=True)
    ]
    assert issues["self_confidence"].to_numpy() == pytest.approx(given, abs=1e-6)
    assert (issues["label"] == out_of_fold.loc[issues["path"], "label"].to_numpy()).all()
    assert (issues["predicted"] == out_of_fold.loc[issues["path"], "predicted"].to_numpy()).all()
    assert len(issues) == min(48, len(out_of_fold))
    lowest = sorted(
        out_of_fold.at[p, f"prob_{out_of_fold.at[p, 'label']}"] for p in out_of_fold.index
    )[: len(issues)]
    assert issues["self_confidence"].tolist() == pytest.approx(lowest, abs=1e-6)

    for name, rows in (("misclassified", len(wrong)), ("label_issues", len(issues))):
        local = store.download_artifacts(parent, f"galleries/{name}.png", str(scratch))
        picture = Image.open(io.BytesIO(Path(local).read_bytes()))
        assert picture.format == "PNG"
        assert picture.height >= 30 + -(-rows // 8) * (96 + 4 * 14)  # every row drawn


def test_no_galleries_without_plots(store: MlflowClient, digits_dir: Path, tmp_path: Path) -> None:
    config = small_config(
        digits_dir,
        tmp_path / "out",
        train={"refit": True},
        tracking={"log_model": False, "plots": False},
    )
    parent, _ = fit_runs(store, config)
    assert store.list_artifacts(parent, "galleries") == []
