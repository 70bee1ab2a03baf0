"""`studies report` on small real studies, checked against the tracking store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from studies.cli import main
from studies.report.build import SECTIONS, write_report
from trainer.errors import UserError

from .conftest import run_study_with_lrs, study_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_studies(
    tmp_path_factory: pytest.TempPathFactory, digits_dir: Path, session_store: str
) -> Iterator[tuple[Path, MlflowClient]]:
    """Two finished studies (one with refit, one with a pruned trial) in the session store."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", session_store)
        journal = root / "journal.log"
        (root / "a").mkdir()
        first = study_file(root / "a", digits_dir, name="report-a", n_trials=3)
        run_study_with_lrs(first, journal, (1e-2, 1e-2, 1e-8))
        (root / "b").mkdir()
        second = study_file(root / "b", digits_dir, name="report-b", n_trials=2)
        raw = yaml.safe_load(second.read_text())
        raw["base"]["train"]["refit"] = True
        second.write_text(yaml.safe_dump(raw))
        assert main(["run", str(second), "--storage", str(journal)]) == 0
        yield root, MlflowClient(session_store)


def test_leaderboard_numbers_equal_the_store(
    two_studies: tuple[Path, MlflowClient], session_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, client = two_studies
    out = write_report(["report-a"], root / "a.html")
    board = pd.read_csv(out.with_suffix(".csv"))
    assert sorted(board["trial"]) == [0, 1, 2]
    assert set(board["state"]) == {"COMPLETE", "PRUNED"}
    for _, row in board.iterrows():
        run = client.get_run(row["run_id"])
        assert row["state"] == run.data.tags["optuna.state"]
        assert row["epochs_trained"] == run.data.metrics["epochs_trained"]
        assert row["train.lr"] == pytest.approx(float(run.data.params["train.lr"]))
        if row["state"] == "COMPLETE":
            assert row["value"] == pytest.approx(run.data.metrics["objective"])
            folds = [
                r
                for r in client.search_runs([run.info.experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == run.info.run_id
            ]
            for fold in folds:
                assert row[f"{fold.info.run_name}/best_val_acc"] == pytest.approx(
                    fold.data.metrics["best/val_acc"]
                )
    values = board["value"].dropna().tolist()
    assert values == sorted(values, reverse=True)  # best first


def test_every_section_is_present_and_nothing_loads_from_outside(
    two_studies: tuple[Path, MlflowClient],
) -> None:
    root, client = two_studies
    out = write_report(["report-b"], root / "b.html")
    page = out.read_text()
    for title in SECTIONS:
        assert title in page, title
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=[\"']https?:", page)  # no external stylesheet either
    board = pd.read_csv(out.with_suffix(".csv"))
    assert board["test_acc"].notna().all()  # refit trials show their holdout accuracy
    experiment = client.get_experiment_by_name("report-b")
    assert experiment is not None
    [study_run] = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("kind") == "study"
    ]
    assert [a.path for a in client.list_artifacts(study_run.info.run_id, "report")] == [
        "report/b.html"
    ]


def test_two_studies_are_told_apart(two_studies: tuple[Path, MlflowClient]) -> None:
    root, _ = two_studies
    assert main(["report", "report-a", "report-b", "--out", str(root / "both.html")]) == 0
    board = pd.read_csv(root / "both.csv")
    assert set(board["study"]) == {"report-a", "report-b"}
    page = (root / "both.html").read_text()
    assert "Best of each study" in page
    assert "report-a value" in page and "report-b value" in page  # history traces per study


def test_unknown_empty_and_failed_only_studies_are_one_line(
    digits_dir: Path, tmp_path: Path, session_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserError, match="no study named 'nope'"):
        write_report(["nope"], tmp_path / "x.html")
    MlflowClient(session_store).create_experiment("empty-study")
    with pytest.raises(UserError, match="'empty-study' has no trials yet"):
        write_report(["empty-study"], tmp_path / "x.html")
    # Every trial fails at run time (the study file itself is valid): its images are gone.
    broken = study_file(tmp_path, tmp_path / "images-gone", name="all-failed", n_trials=1)
    assert main(["run", str(broken), "--storage", str(tmp_path / "j.log")]) == 2
    assert main(["report", "all-failed"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error.startswith("error: study 'all-failed' has no completed trial yet") and "FAIL" in error
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["digits"], "reports/digits.html"),
        (["a", "b"], "reports/a+b.html"),
        (["../../etc/evil"], "reports/_.._etc_evil.html"),
        (["/abs/path"], "reports/_abs_path.html"),
        (["..."], "reports/report.html"),
    ],
)
def test_default_report_path_never_leaves_reports(names: list[str], expected: str) -> None:
    from studies.report.build import default_report_path

    path = default_report_path(names)
    assert path.as_posix() == expected and path.parent == Path("reports")
