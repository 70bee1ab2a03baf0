"""Figures of one fit: learning curves and confusion matrices, as plotly HTML and matplotlib PNG.

HTML files load plotly.js from its CDN to stay small (one per fold and run adds up); the PNG
beside each is the offline view.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

History = dict[str, list[dict[str, float]]]  # fold name -> metrics of each epoch


def learning_curves(history: History, out_dir: Path) -> list[Path]:
    """Loss and accuracy per epoch of every fold (train dashed, validation solid)."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for index, (fold, epochs) in enumerate(sorted(history.items())):
        color = f"C{index % 10}"
        steps = list(range(len(epochs)))
        for column, metric in enumerate(("loss", "acc")):
            for split, dash in (("train", "dash"), ("val", "solid")):
                values = [m.get(f"{split}/{metric}", np.nan) for m in epochs]
                if np.all(np.isnan(values)):
                    continue
                name = f"{fold} {split}"
                figure.add_trace(
                    go.Scatter(
                        x=steps,
                        y=values,
                        name=name,
                        line={"dash": dash},
                        legendgroup=fold,
                        showlegend=column == 0,
                    ),
                    row=1,
                    col=column + 1,
                )
                axes[column].plot(
                    steps,
                    values,
                    color=color,
                    linestyle="--" if dash == "dash" else "-",
                    label=name,
                )
    figure.update_layout(title="Learning curves", xaxis_title="epoch", xaxis2_title="epoch")
    for axis, title in zip(axes, ("loss", "accuracy"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("epoch")
    axes[1].legend(fontsize="small")
    return _save(figure, fig, out_dir / "learning_curves")


def confusion_matrix_plot(
    matrix: np.ndarray, class_names: Sequence[str], title: str, out_path: Path, png: bool = True
) -> list[Path]:
    """A confusion matrix (rows: true class, columns: predicted) as HTML, and PNG if asked
    (the PNG costs ~0.3 s, so per-fold matrices skip it)."""
    labels = list(class_names)
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            showscale=False,
        )
    )
    figure.update_layout(
        title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed"
    )
    if not png:
        return _save(figure, None, out_path)
    fig, axis = plt.subplots(figsize=(1.5 + 0.5 * len(labels), 1.2 + 0.5 * len(labels)))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=90)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize="small")
    return _save(figure, fig, out_path)


def _save(figure: go.Figure, fig: plt.Figure | None, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    html, png = stem.with_suffix(".html"), stem.with_suffix(".png")
    figure.write_html(html, include_plotlyjs="cdn", full_html=True)
    if fig is None:
        return [html]
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return [html, png]
