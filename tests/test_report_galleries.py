"""The report's pictures of predictions: the best trial's galleries embedded from the store,
before and after a promotion refit, and a note where a trial has none."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from studies.cli import main as studies
from studies.report.build import SECTIONS, write_report

from .conftest import run_study_with_lrs, study_file

pytestmark = pytest.mark.slow
STUDY = "gallery-study"
MISCLASSIFIED, LABEL_ISSUES = (
    "Best trial misclassified holdout images",
    "Best trial likely label errors",
)


@pytest.fixture(scope="module")
def reports(
    tmp_path_factory: pytest.TempPathFactory, digits_dir: Path, session_store: str
) -> Iterator[dict[str, object]]:
    """One trial with pictures on and no refit; the report before and after its promotion."""
    root = tmp_path_factory.mktemp("report-galleries")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", session_store)
        path = study_file(root, digits_dir, name=STUDY, n_trials=1, pruner={"type": "none"})
        raw = yaml.safe_load(path.read_text())
        raw["base"]["tracking"]["plots"] = True
        path.write_text(yaml.safe_dump(raw))
        run_study_with_lrs(path, root / "journal.log", [1e-2])
        before = write_report([STUDY], root / "before.html").read_text()
        assert studies(["promote", STUDY, "--model-name", "gallery-model"]) == 0
        after = write_report([STUDY], root / "after.html").read_text()
        yield {"client": MlflowClient(session_store), "before": before, "after": after}


def section(page: str, title: str) -> str:
    """The HTML from ``title``'s heading to the next heading."""
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else len(page)]


def embedded(html: str) -> bytes:
    [data] = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    return base64.b64decode(data)


def trial_run(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    [trial] = [
        r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial" in r.data.tags
    ]
    return str(trial.info.run_id)


def artifact_bytes(client: MlflowClient, run_id: str, path: str, scratch: Path) -> bytes:
    return Path(client.download_artifacts(run_id, path, str(scratch))).read_bytes()


def test_sections_embed_the_trial_galleries_and_load_nothing(
    reports: dict[str, object], tmp_path: Path
) -> None:
    client, page = reports["client"], str(reports["before"])
    assert isinstance(client, MlflowClient)
    assert {MISCLASSIFIED, LABEL_ISSUES} <= set(SECTIONS)
    issues = section(page, LABEL_ISSUES)
    run_id = trial_run(client)
    png = artifact_bytes(client, run_id, "galleries/label_issues.png", tmp_path)
    assert embedded(issues) == png and png.startswith(b"\x89PNG")
    assert f"{STUDY} trial 0 (run {run_id[:8]})" in issues
    listed = pd.read_csv(
        client.download_artifacts(run_id, "galleries/label_issues.csv", str(tmp_path)), dtype=str
    )
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>\s*<td>([^<]+)</td>", issues)  # rank, path
    assert rows == list(zip(listed["rank"], listed["path"], strict=True)) and rows
    # No refit in the trial and no promotion yet: a note, no picture.
    wrong = section(page, MISCLASSIFIED)
    assert "data:image" not in wrong and "no misclassified-images gallery" in wrong
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<img[^>]+src=[\"']https?:", page)


def test_a_promotion_refit_brings_the_misclassified_gallery(
    reports: dict[str, object], tmp_path: Path
) -> None:
    client, page = reports["client"], str(reports["after"])
    assert isinstance(client, MlflowClient)
    trial = trial_run(client)
    [refit] = [
        r
        for r in client.search_runs(
            [client.get_run(trial).info.experiment_id],
            filter_string=f"tags.`promote.refit_of` = '{trial}'",
        )
    ]
    wrong = section(page, MISCLASSIFIED)
    png = artifact_bytes(client, refit.info.run_id, "galleries/misclassified.png", tmp_path)
    assert embedded(wrong) == png
    assert f"its promotion refit, run {refit.info.run_id[:8]}" in wrong
    listed = {a.path for a in client.list_artifacts(refit.info.run_id, "galleries")}
    assert listed == {"galleries/misclassified.png", "galleries/misclassified.csv"}
    assert embedded(section(page, LABEL_ISSUES)) == artifact_bytes(
        client, trial, "galleries/label_issues.png", tmp_path / "trial"
    )
