"""The report's figures and summary read right with few trials (pure functions of the tables)."""

from __future__ import annotations

import pandas as pd

from studies.report.data import StudyData, epochs_spent_and_saved
from studies.report.figures import backbone_figure, history_figure
from studies.report.summary import summary_html


def trial_table() -> pd.DataFrame:
    states = ["COMPLETE", "PRUNED", "COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    return pd.DataFrame(
        {
            "study": "s",
            "trial": range(6),
            "state": states,
            "value": [0.5, None, 0.7, None, None, 0.6],
            "cv_std": [0.02, None, 0.01, None, None, 0.03],
            "test_acc": [None, None, 0.68, None, None, None],
            "epochs_trained": [4, 1, 4, 0, 2, 4],
            "epochs_planned": [4, 4, 4, 4, 4, 4],
            "seconds": [60.0, 15.0, 60.0, 1.0, 30.0, 60.0],
            "model.backbone": ["resnet18", "resnet18", "efficientnet_b0", "x", "x", "resnet18"],
            "train.lr": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4],
        }
    )


def test_best_so_far_runs_through_pruned_and_failed_trials() -> None:
    line = next(t for t in history_figure(trial_table()).data if "best so far" in t.name)
    assert list(line.y) == [0.5, 0.5, 0.7, 0.7, 0.7, 0.7]


def test_few_trials_per_backbone_are_points_without_a_box() -> None:
    complete = trial_table().query("state == 'COMPLETE'")
    (trace,) = backbone_figure(complete).data
    assert trace.boxpoints == "all" and trace.fillcolor == "rgba(0,0,0,0)"
    many = pd.concat([complete[complete["model.backbone"] == "resnet18"]] * 3)
    (boxed,) = backbone_figure(many.reset_index(drop=True)).data
    assert boxed.fillcolor is None  # six trials of one backbone: the box is drawn


def test_pruning_savings_count_only_pruned_trials() -> None:
    assert epochs_spent_and_saved(trial_table()) == (15, 3 + 2)


def test_summary_names_the_best_trial_and_what_it_cost() -> None:
    study = StudyData("s", "1", None, ["train.lr"], {}, trial_table(), pd.DataFrame())
    page = summary_html([study], trial_table())
    assert "2 (train.lr=0.0003)" in page
    assert "0.7000 ± 0.0100" in page and "0.6800" in page  # CV and holdout of trial 2
    assert "3 complete, 2 pruned, 1 fail" in page
    assert f"{226 / 60:.1f} min, 15 epochs trained" in page
    assert "5 epochs (25% of the work without pruning)" in page
