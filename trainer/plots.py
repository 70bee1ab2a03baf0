"""Figures of one fit: learning curves (PNG) and confusion matrices (HTML).

The learning curves are a PNG, which the MLflow UI shows inline; its own metric charts are the
interactive view of the same values (an SVG page of them cost as much again and added nothing).
A confusion matrix is a shaded HTML table that opens offline, loads nothing and shows inline in
the MLflow UI (whose artifact viewer renders HTML); its matplotlib PNG twin was dropped: it cost
~0.45 s at the very end of every fit, where nothing overlaps it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix

from trainer.callbacks import FoldInfo
from trainer.explore.gallery import FAST_PNG
from trainer.fold_results import read_predictions

History = dict[str, list[dict[str, float]]]  # fold name -> metrics of each epoch
_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>"
    "body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}"
    "td,th{{padding:4px 8px;text-align:center;border:1px solid #ddd}}</style></head>"
    "<body><h3>{title}</h3>{body}</body></html>"
)


def learning_curves(history: History, out_dir: Path) -> list[Path]:
    """Loss and accuracy per epoch of every fold (train dashed, validation solid)."""
    fig = Figure(figsize=(10, 4))  # not pyplot: figures are drawn on the tracker's writer thread
    axes = fig.subplots(1, 2)
    for index, (fold, epochs) in enumerate(sorted(history.items())):
        steps = list(range(len(epochs)))
        for column, metric in enumerate(("loss", "acc")):
            label = fold if column == 1 else None  # one legend entry per fold: its first line
            for split, style in (("val", "-"), ("train", "--")):
                values = [m.get(f"{split}/{metric}", np.nan) for m in epochs]
                if not np.all(np.isnan(values)):
                    axes[column].plot(
                        steps, values, color=f"C{index % 10}", linestyle=style, label=label
                    )
                    label = None
    for axis, title in zip(axes, ("loss", "accuracy"), strict=True):
        # y given: matplotlib then skips measuring the axes to place the title
        axis.set_title(f"{title} (train dashed, validation solid)", y=1.0)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    # a legend entry costs as much to draw as an axis' ticks: one per fold, the styles titled
    axes[1].legend(fontsize="small")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.91, wspace=0.15)  # fixed
    # labels, so no tight_layout: it draws the figure once more (a third of the cost)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_png(fig, out_dir / "learning_curves")]


def confusion_matrix_plot(
    matrix: np.ndarray, class_names: Sequence[str], title: str, out_path: Path
) -> list[Path]:
    """A confusion matrix (rows: true class, columns: predicted) as an HTML table, which the
    MLflow UI shows inline (a matplotlib PNG of it cost ~0.45 s of the fit's end)."""
    labels = list(class_names)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page = out_path.with_suffix(".html")
    page.write_text(_PAGE.format(title=html.escape(title), body=confusion_table(matrix, labels)))
    return [page]


def confusion_table(matrix: np.ndarray, labels: list[str]) -> str:
    """The matrix as an HTML table, each cell shaded by its share of the largest count."""
    peak = max(int(matrix.max()), 1)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in labels)
    rows = []
    for name, counts in zip(labels, matrix, strict=True):
        cells = "".join(
            f"<td style='background:rgba(33,102,172,{0.85 * int(c) / peak:.2f});"
            f"color:{'white' if int(c) > peak / 2 else 'black'}'>{int(c)}</td>"
            for c in counts
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return "<table><tr><th>true \\ predicted</th>" + head + "</tr>" + "".join(rows) + "</table>"


def fold_confusion_matrix(
    fold: FoldInfo, predictions: Path, class_names: Sequence[str]
) -> list[Path]:
    """A fold's confusion matrix from its predictions file, in the fold's folder."""
    names = list(class_names)
    frame = read_predictions(predictions)
    matrix = confusion_matrix(frame["label"], frame["predicted"], labels=names)
    split = "holdout" if fold.index < 0 else "validation"
    title = f"{fold.name}: {split} confusion matrix"
    return confusion_matrix_plot(matrix, names, title, fold.out_dir / "confusion_matrix")


def _png(fig: Figure, stem: Path) -> Path:
    path = stem.with_suffix(".png")
    fig.savefig(path, dpi=80, pil_kwargs={"compress_level": FAST_PNG})
    return path
