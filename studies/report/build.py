"""``studies report``: one self-contained HTML file (plotly embedded) and a leaderboard CSV."""

from __future__ import annotations

import base64
import html
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from mlflow import MlflowClient
from plotly.offline import get_plotlyjs

from studies.report import figures
from studies.report.data import Gallery, StudyData, best_trial, load_study, trial_galleries
from studies.report.summary import summary_html
from trainer.errors import UserError
from trainer.galleries import LABEL_ISSUES, MISCLASSIFIED
from trainer.tracking import open_client

log = logging.getLogger(__name__)


SECTIONS = (
    "Summary",
    "Leaderboard",
    "Optimisation history",
    "Parallel coordinates",
    "Parameter importance",
    "Value by backbone",
    "Value against each numeric parameter",
    "Learning curves of the top trials",
    "Pruning and cost",
    "Trial timeline",
    "Best trial confusion matrix",
    "Best trial misclassified holdout images",
    "Best trial likely label errors",
)

# The galleries a trial run logs (trainer.galleries): section, name, what it shows, why absent.
GALLERIES = (
    (
        SECTIONS[-2],
        MISCLASSIFIED,
        "The holdout images the refit got wrong, the most-confused pairs of true and predicted "
        "class first and, within a pair, the most confident mistakes first.",
        "no misclassified-images gallery: it is drawn from the holdout predictions of a refit "
        "(train.refit: true, or `studies promote`) with tracking.plots on.",
    ),
    (
        SECTIONS[-1],
        LABEL_ISSUES,
        "The images whose given label has the lowest out-of-fold probability (each judged by "
        "the fold model that did not train on it): check these labels first.",
        "no likely-label-errors gallery: it needs the out-of-fold predictions of data.folds >= 2 "
        "with tracking.plots on.",
    ),
)


def default_report_path(names: list[str]) -> Path:
    """``reports/<names>.html``, the names made safe as one file name (never leaving reports/)."""
    stem = re.sub(r"[^A-Za-z0-9._+=-]", "_", "+".join(names)).lstrip(".") or "report"
    return Path("reports") / f"{stem[:150]}.html"


def write_report(names: list[str], out: Path | None = None, top: int = 5) -> Path:
    """Build the report of ``names`` from the tracking store; returns the HTML path."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = open_client()
    studies = [load_study(client, name) for name in names]
    out = out or default_report_path(names)
    out.parent.mkdir(parents=True, exist_ok=True)
    trials = pd.concat([s.trials for s in studies], ignore_index=True)
    folds = pd.concat([s.folds.assign(study=s.name) for s in studies], ignore_index=True)
    board = leaderboard(trials, folds, [k for s in studies for k in s.searched])
    board.to_csv(out.with_suffix(".csv"), index=False)
    parts = [
        summary_html(studies, trials),
        _table("Leaderboard", board.drop(columns=["run_url"]), links=board["run_url"]),
    ]
    if len(studies) > 1:
        parts.append(_table("Best of each study", _bests(board), links=None))
    parts += [
        fig.to_html(full_html=False, include_plotlyjs=False)
        for fig in _figures(client, studies, trials, folds, top)
    ]
    parts += _galleries(client, studies, trials)
    out.write_text(_page(names, parts), encoding="utf-8")
    for study in studies:
        if study.study_run_id:
            client.log_artifact(study.study_run_id, str(out), "report")
    log.info("report written to %s (leaderboard %s)", out, out.with_suffix(".csv"))
    return out


def leaderboard(trials: pd.DataFrame, folds: pd.DataFrame, searched: list[str]) -> pd.DataFrame:
    """One row per trial, best first: params, CV mean ± std, per-fold bests, cost, run link."""
    per_fold = folds.pivot_table(index=["study", "trial"], columns="fold", values="best_val_acc")
    per_fold.columns = [f"{c}/best_val_acc" for c in per_fold.columns]
    keys = list(dict.fromkeys(k for k in searched if k in trials))
    columns = [
        "study",
        "trial",
        "state",
        *keys,
        "value",
        "cv_std",
        "test_acc",
        "seconds",
        "epochs_trained",
        "epochs_planned",
        "run_id",
        "run_url",
    ]
    board = trials[columns].merge(per_fold.reset_index(), on=["study", "trial"], how="left")
    return board.sort_values(["value", "cv_std"], ascending=[False, True], na_position="last")


def _bests(board: pd.DataFrame) -> pd.DataFrame:
    complete = board[board["state"] == "COMPLETE"]
    return complete.groupby("study", sort=False).head(1).drop(columns=["run_url"])


def _figures(
    client: MlflowClient,
    studies: list[StudyData],
    trials: pd.DataFrame,
    folds: pd.DataFrame,
    top: int,
) -> list[go.Figure]:
    complete = trials[trials["state"] == "COMPLETE"]
    numeric = [
        k for s in studies for k in s.searched if pd.api.types.is_numeric_dtype(trials.get(k))
    ]
    return [
        figures.history_figure(trials),
        figures.parallel_figure(complete, [k for s in studies for k in s.searched]),
        figures.importance_figure(client, studies),
        figures.backbone_figure(complete),
        figures.numeric_figure(complete, list(dict.fromkeys(numeric))),
        figures.curves_figure(client, complete, folds, top),
        figures.cost_figure(trials),
        figures.timeline_figure(trials),
        figures.confusion_figure(client, complete, folds),
    ]


def _galleries(client: MlflowClient, studies: list[StudyData], trials: pd.DataFrame) -> list[str]:
    """The best trial's pictures of predictions, each a section (a note when it has none)."""
    best = best_trial(trials[trials["state"] == "COMPLETE"])
    experiment = next(s.experiment_id for s in studies if s.name == best["study"])
    found = trial_galleries(client, experiment, str(best["run_id"]))
    who = f"{best['study']} trial {best['trial']}"
    return [
        _gallery_html(title, who, str(best["run_id"]), found.get(name), (shows, absent))
        for title, name, shows, absent in GALLERIES
    ]


def _gallery_html(
    title: str, who: str, trial_run: str, gallery: Gallery | None, texts: tuple[str, str]
) -> str:
    """The gallery's PNG embedded (base64) with its rows as a table, or why there is none;
    ``texts``: what the gallery shows, and what is missing when it is absent."""
    heading, (shows, absent) = f"<h2>{html.escape(title)}</h2>", texts
    if gallery is None:
        return f"{heading}\n<p class='note'>{html.escape(f'{who} logged {absent}')}</p>"
    source = "run" if gallery.run_id == trial_run else "its promotion refit, run"
    picture = base64.b64encode(gallery.png).decode("ascii")
    rows = gallery.table.to_html(index=False, border=0, classes="board")  # text escaped
    count = len(gallery.table)
    return (
        f"{heading}\n<p>{html.escape(f'{who} ({source} {gallery.run_id[:8]}). {shows}')}</p>"
        f"<img alt='{html.escape(title)}' style='max-width:100%' "
        f"src='data:image/png;base64,{picture}'>"
        f"<details><summary>The {count} image{'' if count == 1 else 's'} with their paths "
        f"(relative to data.root) and scores</summary>\n{rows}</details>"
    )


def _table(title: str, frame: pd.DataFrame, links: pd.Series | None) -> str:
    shown = frame.copy().astype(object).where(frame.notna(), "")
    for column in frame.select_dtypes(include=[np.floating]).columns:
        shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    if links is not None:
        shown["run_id"] = [
            f'<a href="{html.escape(u)}">{html.escape(r[:8])}</a>'
            for r, u in zip(shown["run_id"], links, strict=True)
        ]
    body = shown.to_html(index=False, escape=False, border=0, classes="board")
    return f"<h2>{html.escape(title)}</h2>\n{body}"


def _page(names: list[str], parts: list[str]) -> str:
    heading = html.escape(", ".join(names))
    style = (
        "body{font-family:sans-serif;margin:2em}"
        " table.board{border-collapse:collapse;font-size:12px}"
        " .board td,.board th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}"
        " table.summary th{text-align:left;padding:2px 12px 2px 0}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Study report: {heading}</title>"
        f"<style>{style}</style><script type='text/javascript'>{get_plotlyjs()}</script></head>"
        f"<body><h1>Study report: {heading}</h1>\n" + "\n".join(parts) + "</body></html>"
    )


def check_names(names: list[str]) -> None:
    """Refuse an empty or repeated list of study names."""
    if not names or len(set(names)) != len(names):
        raise UserError("studies report takes one or more distinct study names")
