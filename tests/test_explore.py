"""trainer explore: planted problems are found, listed with both paths and shown as pictures."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from trainer.cli import main
from trainer.data.dataset import find_samples
from trainer.explore import warning_for
from trainer.explore.gallery import CELL, COLUMNS, cell_origin
from trainer.explore.probe import probe_all, probe_file
from trainer.explore.run import explore

from .explore_data import BLUE, RED, Planted, config_of, plant, sideways_jpeg


@dataclass(frozen=True)
class Explored:
    """One ``trainer explore CONFIG`` over the planted dataset."""

    root: Path
    out: Path
    planted: Planted
    uri: str
    stdout: str
    stderr: str
    code: int

    @property
    def folder(self) -> Path:
        return self.out / "explore-test" / "explore"


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explored]:
    base = tmp_path_factory.mktemp("explore")
    root, out = base / "data", base / "outputs"
    planted = plant(root, base)
    config_file = base / "config.yaml"
    config_file.write_text(
        f"experiment: explore-test\ndata: {{root: {root}, test_size: 0.2, folds: 2}}\n"
        f"output: {{dir: {out}}}\n"
    )
    uri = f"sqlite:///{base / 'mlflow.db'}"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["explore", str(config_file)])
    yield Explored(root, out, planted, uri, stdout.getvalue(), stderr.getvalue(), code)


def pairs_of(explored: Explored) -> pd.DataFrame:
    return pd.read_csv(explored.folder / "duplicates.csv", keep_default_na=False)


def pair_row(table: pd.DataFrame, first: str, second: str) -> pd.Series:
    match = table[
        ((table["path_a"] == first) & (table["path_b"] == second))
        | ((table["path_a"] == second) & (table["path_b"] == first))
    ]
    assert len(match) == 1, f"{first} / {second} not listed once in\n{table}"
    return match.iloc[0]


def test_command_succeeds_and_prints_its_summary(explored: Explored) -> None:
    assert explored.code == 0, explored.stderr
    assert "exact duplicate pairs" in explored.stdout
    assert str(explored.folder) in explored.stdout
    assert "holdout leakage" in explored.stderr and "label conflicts" in explored.stderr


def test_holdout_leak_is_found_listed_and_shown(explored: Explored) -> None:
    row = pair_row(pairs_of(explored), *explored.planted.leak)
    assert row["kind"] == "exact" and row["leakage"] and not row["cross_class"]
    assert {row["split_a"], row["split_b"]} & {"test"} and row["scope"] == "leakage"
    assert_picture(explored.folder / "duplicates" / "leakage.png")


def test_cross_class_copy_is_found_listed_and_shown(explored: Explored) -> None:
    row = pair_row(pairs_of(explored), *explored.planted.conflict)
    assert row["kind"] == "exact" and row["cross_class"]
    assert {row["label_a"], row["label_b"]} == {"cat", "dog"}
    assert_picture(explored.folder / "duplicates" / "cross_class.png")


def test_near_copy_is_found_within_its_class(explored: Explored) -> None:
    row = pair_row(pairs_of(explored), *explored.planted.near)
    assert row["kind"] == "near" and 0 < row["distance"] <= 4 and not row["cross_class"]


def test_nothing_else_is_called_a_duplicate(explored: Explored) -> None:
    assert len(pairs_of(explored)) == 3


def test_unreadable_file_is_listed_with_its_reason(explored: Explored) -> None:
    table = pd.read_csv(explored.folder / "unreadable.csv")
    assert table.to_dict("records") == [
        {
            "path": explored.planted.unreadable,
            "label": "dog",
            "reason": "cannot decode (corrupt, truncated or not an image)",
        }
    ]


def test_exif_rotated_thumbnail_is_upright(explored: Explored) -> None:
    grid = read_png(explored.folder / "thumbnails" / "00-cat.png")
    x, y = cell_origin(0, COLUMNS)  # a_rotated.jpg sorts first in cat/
    cell = grid[y : y + CELL, x : x + CELL].astype(int)
    portrait = np.flatnonzero((cell != 255).any(axis=2).any(axis=0))
    assert 40 <= len(portrait) <= 56, "upright it is half as wide as high: a 48 px wide thumbnail"
    column = cell[:, CELL // 2]
    assert np.abs(column[10] - RED).max() < 40 and np.abs(column[-10] - BLUE).max() < 40
    images = pd.read_csv(explored.folder / "images.csv", keep_default_na=False)
    rotated = images.set_index("path").loc[explored.planted.rotated]
    assert (rotated["orientation"], rotated["width"], rotated["height"]) == (6, 32, 64)


def test_tables_hold_counts_splits_and_file_facts(explored: Explored) -> None:
    classes = pd.read_csv(explored.folder / "classes.csv").set_index("class")
    assert classes["images"].to_dict() == {"cat": 11, "dog": 11}
    assert classes.loc["dog", "unreadable"] == 1
    assert classes[["holdout", "fold_0", "fold_1"]].to_numpy().sum() == 21
    properties = pd.read_csv(explored.folder / "file_properties.csv")
    formats = properties[properties["property"] == "format"].set_index("value")["images"]
    assert set(formats.index) == {"JPEG", "PNG"} and formats.sum() == 22  # copies keep content
    modes = properties[properties["property"] == "mode"].set_index("value")["images"]
    assert modes.to_dict() == {"RGB": 22}
    summary = json.loads((explored.folder / "summary.json").read_text())
    assert summary["imbalance_ratio"] == 1.0 and summary["leakage_pairs"] == 1


def test_explore_run_holds_metrics_artifacts_and_dataset(explored: Explored) -> None:
    client = MlflowClient(explored.uri)
    experiment = client.get_experiment_by_name("explore-test")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "explore" and run.info.status == "FINISHED"
    assert "holdout leakage 1, label conflicts 1" in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["images"] == 22 and run.data.metrics["unreadable"] == 1
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"class_counts.png", "duplicates.csv", "thumbnails", "duplicates"} <= names
    shown = {f.path for f in client.list_artifacts(run.info.run_id, "duplicates")}
    assert shown == {
        "duplicates/leakage.png",
        "duplicates/cross_class.png",
        "duplicates/within_class.png",
    }
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.source and dataset.dataset.name == "data"
    assert dataset.dataset.digest and "label" in dataset.dataset.schema


def test_training_warning_names_leakage_and_conflicts(explored: Explored) -> None:
    line = warning_for(config_of(explored.root, explored.out))
    assert line is not None and "\n" not in line
    assert "holdout leakage: 1" in line and "label conflicts: 1" in line
    assert "trainer explore" in line


def test_no_warning_before_explore_or_for_clean_data(digits_dir: Path, tmp_path: Path) -> None:
    assert warning_for(config_of(digits_dir, tmp_path)) is None


def test_second_explore_reuses_the_findings(
    explored: Explored, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("probed again")

    monkeypatch.setattr("trainer.explore.run.probe_all", refuse)
    found = explore(config_of(explored.root, explored.out, tracking=False), near_distance=0)
    assert found.run_id is None
    assert set(found.pairs["kind"]) == {"exact"}  # a new distance: pairs recomputed, not probed


def test_process_pool_gives_the_same_probes(tmp_path: Path) -> None:
    for index in range(70):
        label = tmp_path / f"c{index % 2}"
        label.mkdir(exist_ok=True)
        sideways_jpeg(label / f"{index:02d}.jpg")
    samples = find_samples(tmp_path)
    assert probe_all(samples.paths, 2) == [probe_file(path) for path in samples.paths]


def test_data_too_small_to_split_is_still_explored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(2):
            sideways_jpeg(tmp_path / "data" / label / f"{index}.jpg")
    out = tmp_path / "outputs"
    code = main(
        ["explore", str(tmp_path / "data"), "--set", f"output.dir={out}", "--set", "tracking=false"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "holdout / folds        none: class 'a' has 2 image(s)" in printed
    assert "exact duplicate pairs  1 within-class, 2 cross-class" in printed
    assert (out / "default" / "explore" / "duplicates" / "cross_class.png").exists()


def test_missing_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explore", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: not found:") and len(err.splitlines()) == 1


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def assert_picture(path: Path) -> None:
    image = read_png(path)
    assert image.shape[0] > CELL and (image != 255).any()


def test_near_copies_are_sought_only_in_images_large_enough_to_hash() -> None:
    from trainer.explore.duplicates import MIN_NEAR_SIDE, find_pairs

    side = [8, 8, MIN_NEAR_SIDE, MIN_NEAR_SIDE]
    images = pd.DataFrame(
        {
            "error": "",
            "sha256": ["a", "b", "c", "d"],
            "phash": ["00000000000000ff"] * 4,  # alike: as tiny images of one kind hash
            "width": side,
            "height": [s + 4 for s in side],
        }
    )
    pairs = find_pairs(images)
    assert pairs[["kind", "a", "b"]].values.tolist() == [["near", 2, 3]]
