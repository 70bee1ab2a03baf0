"""Charts of a dataset as PNG files (which the MLflow UI shows inline): classes, sizes, files."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

DPI = 90
MAX_BARS = 60  # class bars drawn; more classes: the largest ones (the CSV lists all)


def class_counts_figure(classes: pd.DataFrame, path: Path) -> Path:
    """Images per class, the holdout's share stacked on top."""
    shown = classes.nlargest(MAX_BARS, "images").sort_values("class")
    names = [plain(str(name)) for name in shown["class"]]
    holdout = shown["holdout"] if "holdout" in shown else pd.Series(0, index=shown.index)
    rest = shown["images"] - holdout
    fig, axis = plt.subplots(figsize=(max(5.5, 0.35 * len(names) + 2), 3.8))
    axis.bar(names, rest, color="C0", label="cross-validation")
    axis.bar(names, holdout, bottom=rest, color="C1", label="holdout")
    ratio = shown["images"].max() / max(1, shown["images"].min())
    title = f"images per class\nlargest / smallest = {ratio:.2f}"
    if len(classes) > len(shown):
        title += f"; the {len(shown)} largest of {len(classes)} classes"
    axis.set_title(title, fontsize="medium")
    axis.set_ylabel("images")
    axis.tick_params(axis="x", labelrotation=90 if len(names) > 12 else 0)
    axis.legend(fontsize="small")
    return save(fig, path)


def sizes_figure(images: pd.DataFrame, path: Path) -> Path:
    """Histograms of width, height and aspect ratio (upright, from the file headers)."""
    known = images[images["width"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for axis, column in zip(axes, ("width", "height", "aspect"), strict=True):
        values = known[column]
        axis.hist(values, bins=min(40, max(1, values.nunique())), color="C0")
        span = f"{column}: {values.min():.3g} to {values.max():.3g}" if len(values) else column
        axis.set_title(span)
        axis.set_xlabel("pixels" if column != "aspect" else "width / height")
        axis.set_ylabel("images")
    return save(fig, path)


def properties_figure(properties: pd.DataFrame, path: Path) -> Path:
    """Bars of images per file format, colour mode, channel count and bit depth."""
    names = ("format", "mode", "channels", "bit_depth")
    fig, axes = plt.subplots(1, len(names), figsize=(11, 3.0))
    for axis, name in zip(axes, names, strict=True):
        rows = properties[properties["property"] == name]
        axis.bar([plain(str(v)) for v in rows["value"]], rows["images"], color="C2")
        axis.set_title(name.replace("_", " "))
        axis.set_ylabel("images")
    return save(fig, path)


def plain(text: str) -> str:
    """``text`` shown as written (a ``$`` would start matplotlib's math mode)."""
    return text.replace("$", r"\$")


def save(fig: Figure, path: Path) -> Path:
    """Write and close a figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # missing glyphs of unusual class names
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
