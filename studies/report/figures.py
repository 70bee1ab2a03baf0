"""The report's figures, one function per section, from the trial and fold tables."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import optuna
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from mlflow import MlflowClient
from plotly.subplots import make_subplots
from sklearn.metrics import confusion_matrix

from studies.report.data import StudyData, best_trial, epochs_spent_and_saved, fold_histories

log = logging.getLogger(__name__)

PALETTE = plotly.colors.qualitative.Plotly  # one colour per study (or trial) across figures


def history_figure(trials: pd.DataFrame) -> go.Figure:
    """Value per trial and best so far, per study."""
    figure = go.Figure()
    for study, rows in trials.groupby("study", sort=False):
        rows = rows.sort_values("trial")
        done = rows[rows["state"] == "COMPLETE"]
        figure.add_scatter(x=done["trial"], y=done["value"], mode="markers", name=f"{study} value")
        # Carried through pruned and failed trials: the best so far does not vanish with them.
        best = rows["value"].where(rows["state"] == "COMPLETE").cummax().ffill()
        figure.add_scatter(x=rows["trial"], y=best, mode="lines", name=f"{study} best so far")
    return figure.update_layout(
        title="Optimisation history", xaxis_title="trial", yaxis_title="CV mean val accuracy"
    )


def parallel_figure(complete: pd.DataFrame, keys: list[str]) -> go.Figure:
    """Searched parameters against the value (categories as ticks)."""
    dimensions = []
    for key in dict.fromkeys(keys):
        column = complete[key]
        if pd.api.types.is_numeric_dtype(column):
            dimensions.append({"label": key, "values": column})
        else:
            codes, names = pd.factorize(column.astype(str))
            dimensions.append(
                {
                    "label": key,
                    "values": codes,
                    "tickvals": list(range(len(names))),
                    "ticktext": list(names),
                }
            )
    dimensions.append({"label": "value", "values": complete["value"]})
    line = {"color": complete["value"], "colorscale": "Viridis", "showscale": True}
    return go.Figure(go.Parcoords(dimensions=dimensions, line=line)).update_layout(
        title="Parallel coordinates"
    )


def importance_figure(client: MlflowClient, studies: list[StudyData]) -> go.Figure:
    """Optuna's parameter importance, computed on the trials as the store has them."""
    figure = go.Figure()
    notes, bars = [], 0
    for study in studies:
        scores = _importances(client, study)
        if scores:
            names = list(scores)[::-1]  # most important on top
            figure.add_bar(x=[scores[n] for n in names], y=names, orientation="h", name=study.name)
            bars += len(names)
        else:
            notes.append(f"{study.name}: needs at least two complete trials with varied parameters")
    figure.update_layout(
        title="Parameter importance",
        xaxis_title="importance",
        barmode="group",
        height=max(300, 120 + 28 * bars),  # one readable row per bar
        yaxis={"automargin": True},
    )
    for index, note in enumerate(notes):
        figure.add_annotation(
            text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5 - 0.1 * index
        )
    return figure


def _importances(client: MlflowClient, study: StudyData) -> dict[str, float]:
    space = _distributions(study.space)
    complete = study.trials[study.trials["state"] == "COMPLETE"]
    if not space or len(complete) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    replay = optuna.create_study(direction="maximize")
    for _, row in complete.iterrows():
        params = {k: row[k] for k in space}
        replay.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=row["value"])
        )
    try:
        return optuna.importance.get_param_importances(replay)
    except (RuntimeError, ValueError) as exc:
        log.info("no parameter importance for %s: %s", study.name, exc)
        return {}


def _distributions(logged: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, spec in logged.items():
        if spec["type"] == "float":
            space[key] = optuna.distributions.FloatDistribution(
                spec["low"], spec["high"], log=spec["log"]
            )
        elif spec["type"] == "int":
            space[key] = optuna.distributions.IntDistribution(
                spec["low"], spec["high"], step=spec["step"]
            )
        else:
            space[key] = optuna.distributions.CategoricalDistribution(spec["choices"])
    return space


MIN_BOX_POINTS = 5  # fewer trials per backbone are drawn as points only: a box of 1-2 misleads


def backbone_figure(complete: pd.DataFrame) -> go.Figure:
    """Value by backbone, every trial a point, per study; boxes where each group has enough."""
    backbone = (
        complete["model.backbone"]
        if "model.backbone" in complete
        else pd.Series("(fixed)", complete.index)
    )
    figure = go.Figure()
    for study, rows in complete.groupby("study", sort=False):
        boxed = backbone[rows.index].value_counts().min() >= MIN_BOX_POINTS
        hidden = {"fillcolor": "rgba(0,0,0,0)", "line": {"color": "rgba(0,0,0,0)"}}
        figure.add_box(
            x=backbone[rows.index],
            y=rows["value"],
            name=str(study),
            boxpoints="all",
            jitter=0.3,
            pointpos=0,
            **({} if boxed else hidden),
        )
    return figure.update_layout(
        title="Value by backbone", boxmode="group", yaxis_title="CV mean val accuracy"
    )


def numeric_figure(complete: pd.DataFrame, keys: list[str]) -> go.Figure:
    """Value against each numeric searched parameter (log axis for wide ranges)."""
    figure = make_subplots(
        rows=1, cols=max(len(keys), 1), subplot_titles=keys or ["(none searched)"]
    )
    for column, key in enumerate(keys, start=1):
        for study, rows in complete.groupby("study", sort=False):
            figure.add_scatter(
                x=rows[key],
                y=rows["value"],
                mode="markers",
                name=f"{study}",
                showlegend=column == 1,
                row=1,
                col=column,
            )
        values = complete[key].dropna()
        if len(values) and values.min() > 0 and values.max() / values.min() > 50:
            figure.update_xaxes(type="log", row=1, col=column)
    return figure.update_layout(title="Value against each numeric parameter")


def curves_figure(
    client: MlflowClient, complete: pd.DataFrame, folds: pd.DataFrame, top: int
) -> go.Figure:
    """Validation accuracy per epoch of the top trials: fold mean, with the fold range shaded."""
    figure = go.Figure()
    drawn = 0
    for study, rows in complete.groupby("study", sort=False):
        best = rows.nlargest(top, "value")["trial"].tolist()
        history = fold_histories(client, folds[folds["study"] == study], best)
        for trial in best:
            stats = history[history["trial"] == trial].groupby("epoch")["val_acc"]
            curve = stats.agg(["mean", "min", "max"])
            name, color = f"{study} trial {trial}", PALETTE[drawn % len(PALETTE)]
            drawn += 1
            epochs = list(curve.index)
            figure.add_scatter(
                x=epochs + epochs[::-1],
                y=list(curve["max"]) + list(curve["min"])[::-1],
                fill="toself",
                fillcolor=color,
                opacity=0.2,
                line={"width": 0},
                showlegend=False,
                name=name,
            )
            figure.add_scatter(
                x=epochs, y=curve["mean"], mode="lines+markers", name=name, line={"color": color}
            )
    return figure.update_layout(
        title="Learning curves of the top trials",
        xaxis_title="epoch",
        yaxis_title="val accuracy (fold mean; band: fold range)",
    )


def cost_figure(trials: pd.DataFrame) -> go.Figure:
    """Trials, epochs and seconds per state, and the epochs pruning saved."""
    figure = make_subplots(rows=1, cols=3, subplot_titles=("trials", "epochs trained", "seconds"))
    for index, (study, rows) in enumerate(trials.groupby("study", sort=False)):
        summary = rows.groupby("state").agg(
            trials=("trial", "count"), epochs=("epochs_trained", "sum"), seconds=("seconds", "sum")
        )
        for column, metric in enumerate(("trials", "epochs", "seconds"), start=1):
            figure.add_bar(
                x=summary.index,
                y=summary[metric],
                name=str(study),
                showlegend=column == 1,
                marker_color=PALETTE[index % len(PALETTE)],
                row=1,
                col=column,
            )
    spent, saved = epochs_spent_and_saved(trials)
    share = saved / (saved + spent) if saved + spent else 0.0
    title = f"Pruning and cost: pruning saved {saved} epochs ({share:.0%} of the work without it)"
    return figure.update_layout(title=title)


def timeline_figure(trials: pd.DataFrame) -> go.Figure:
    """When each trial ran, on which worker, in which state."""
    figure = go.Figure()
    colors = {"COMPLETE": "#2ca02c", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#1f77b4"}
    for state, rows in trials.groupby("state"):
        durations = (rows["end"] - rows["start"]).dt.total_seconds() * 1000
        labels = rows["study"] + " " + rows["worker"].str.split(":").str[:2].str.join(":")
        figure.add_bar(
            x=durations,
            base=rows["start"],
            y=labels,
            orientation="h",
            name=str(state),
            marker_color=colors.get(str(state), "#7f7f7f"),
            text=rows["trial"].astype(str),
        )
    height = 180 + 40 * trials["worker"].nunique() * trials["study"].nunique()
    return figure.update_layout(
        title="Trial timeline", xaxis_type="date", barmode="overlay", height=height
    )


def confusion_figure(
    client: MlflowClient, complete: pd.DataFrame, folds: pd.DataFrame
) -> go.Figure:
    """Confusion matrix of the best trial's validation predictions over all its folds."""
    best = best_trial(complete)
    runs = folds[(folds["study"] == best["study"]) & (folds["trial"] == best["trial"])]["run_id"]
    frames = []
    with tempfile.TemporaryDirectory() as scratch:
        for run_id in runs:
            try:
                local = client.download_artifacts(run_id, "val_predictions.csv", scratch)
            except Exception as exc:  # artifact store errors have no common base class
                log.warning("no predictions for fold run %s: %s", run_id, exc)
                continue
            frames.append(
                pd.read_csv(
                    local, dtype=str, keep_default_na=False, encoding_errors="backslashreplace"
                )
            )
    title = f"Best trial confusion matrix ({best['study']} trial {best['trial']}, all folds)"
    if not frames:
        return go.Figure().update_layout(title=title + ": no predictions logged")
    data = pd.concat(frames)
    labels = sorted(set(data["label"]) | set(data["predicted"]))
    matrix = confusion_matrix(data["label"], data["predicted"], labels=labels)
    heatmap = go.Heatmap(
        z=matrix,
        x=labels,
        y=labels,
        text=matrix,
        texttemplate="%{text}",
        colorscale="Blues",
        showscale=False,
    )
    return go.Figure(heatmap).update_layout(
        title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed"
    )
