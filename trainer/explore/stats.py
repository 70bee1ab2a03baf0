"""Tables of a dataset: one row per image, the classes with their split sizes, the file facts."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from trainer.data.dataset import Samples, printable
from trainer.explore.duplicates import scope_of
from trainer.explore.probe import Probe

PROPERTIES = ("format", "mode", "channels", "bit_depth", "orientation")  # counted per value
SPLIT_ORDER = {"test": -2, "train": -1}  # the holdout first, then training-only, then folds


def image_table(samples: Samples, probes: list[Probe]) -> pd.DataFrame:
    """One row per image of ``samples``, in order: path, label, and what the probe saw."""
    table = pd.DataFrame([asdict(probe) for probe in probes])
    table = table.rename(columns={"file_format": "format"})
    table.insert(0, "path", [printable(path) for path in samples.relative_paths])
    names = [printable(name) for name in samples.class_names]
    table.insert(1, "label", [names[k] for k in samples.labels])
    return table


def with_aspect(images: pd.DataFrame) -> pd.DataFrame:
    """``images`` with ``aspect`` = width / height (NaN where the header is unreadable)."""
    height = images["height"].replace(0, np.nan)
    return images.assign(aspect=(images["width"] / height).round(4))


def class_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per class: images, unreadable ones, and how many the holdout and each fold hold."""
    table = pd.DataFrame(
        {
            "images": images.groupby("label").size(),
            "unreadable": images[images["error"] != ""].groupby("label").size(),
        }
    )
    splits = images[images["split"] != ""]
    if len(splits):
        counts = splits.groupby(["label", "split"]).size().unstack(fill_value=0)
        names = sorted(
            counts.columns, key=lambda s: SPLIT_ORDER.get(s, int(s) if s.isdigit() else 0)
        )
        counts = counts[names].rename(columns=_split_column)
        table = table.join(counts)
    table = table.fillna(0).astype("int64")
    table.index.name = "class"
    return table.reset_index()


def _split_column(split: str) -> str:
    return {"test": "holdout", "train": "train_only"}.get(split, f"fold_{split}")


def imbalance_ratio(counts: pd.Series) -> float:
    """Largest class size over the smallest."""
    return float(counts.max() / max(1, counts.min()))


def property_table(images: pd.DataFrame) -> pd.DataFrame:
    """How many images have each value of each file property (format, mode, ...)."""
    rows = [
        {"property": name, "value": str(value), "images": int(count)}
        for name in PROPERTIES
        for value, count in images[name].value_counts().sort_index().items()
    ]
    return pd.DataFrame(rows, columns=["property", "value", "images"])


def size_summary(images: pd.DataFrame) -> dict[str, float]:
    """Min, median and max of width, height and aspect over readable headers."""
    known = images[images["width"] > 0]
    summary: dict[str, float] = {}
    for column in ("width", "height", "aspect"):
        values = known[column]
        if len(values):
            summary.update(
                {
                    f"{column}_min": float(values.min()),
                    f"{column}_median": float(values.median()),
                    f"{column}_max": float(values.max()),
                }
            )
    return summary


def summarize(images: pd.DataFrame, classes: pd.DataFrame, table: pd.DataFrame) -> dict[str, float]:
    """The run's metrics: counts, imbalance, sizes, duplicates by kind and scope."""
    scope = scope_of(table)
    summary: dict[str, float] = {
        "images": float(len(images)),
        "classes": float(len(classes)),
        "imbalance_ratio": imbalance_ratio(classes.set_index("class")["images"]),
        "unreadable": float((images["error"] != "").sum()),
        "holdout": float((images["split"] == "test").sum()),
        "folds": float(sum(column.startswith("fold_") for column in classes.columns)),
        "exif_rotated": float((images["orientation"] > 1).sum()),
    }
    for kind in ("exact", "near"):
        for name in ("within_class", "cross_class", "leakage"):
            chosen = (table["kind"] == kind) & (scope == name)
            summary[f"{kind}_duplicates/{name}"] = float(chosen.sum())
    summary["cross_class_pairs"] = float(table["cross_class"].sum())
    summary["leakage_pairs"] = float(table["leakage"].sum())
    return {**summary, **size_summary(images)}
