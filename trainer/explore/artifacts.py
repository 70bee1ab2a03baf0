"""The files of an exploration: tables (CSV), charts, thumbnail grids and duplicate galleries.

Layout of the folder (and of the MLflow run's artifacts)::

    summary.json  classes.csv  file_properties.csv  images.csv  unreadable.csv  duplicates.csv
    class_counts.png  image_sizes.png  file_properties.png
    thumbnails/<NN>-<class>.png          up to 32 images of each class, EXIF orientation applied
    duplicates/leakage.png               holdout images with a copy in the data trained on
    duplicates/cross_class.png           copies filed under two classes (a label conflict)
    duplicates/within_class.png          copies within one class
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trainer.explore import figures, gallery
from trainer.explore.duplicates import scope_of
from trainer.explore.stats import property_table

THUMBS_PER_CLASS = 32
PAIRS_SHOWN = 24  # per gallery; duplicates.csv lists them all
SCOPES = {
    "leakage": "holdout leakage: a holdout image and its copy in the data trained on",
    "cross_class": "label conflicts: copies filed under different classes",
    "within_class": "duplicates within a class",
}
SPLIT_WORDS = {"test": "holdout", "train": "train", "": "no split"}


def write_tables(
    images: pd.DataFrame, classes: pd.DataFrame, pairs: pd.DataFrame, out: Path
) -> None:
    """classes, file properties, every image, the unreadable ones and the duplicate pairs."""
    out.mkdir(parents=True, exist_ok=True)
    classes.to_csv(out / "classes.csv", index=False)
    property_table(images).to_csv(out / "file_properties.csv", index=False)
    images.to_csv(out / "images.csv", index=False)
    unreadable = images.loc[images["error"] != "", ["path", "label", "error"]]
    unreadable.rename(columns={"error": "reason"}).to_csv(out / "unreadable.csv", index=False)
    listed = pairs.drop(columns=["row_a", "row_b"]).assign(scope=scope_of(pairs))
    listed.to_csv(out / "duplicates.csv", index=False)


def write_figures(images: pd.DataFrame, classes: pd.DataFrame, out: Path) -> None:
    """Class counts, size histograms and file-property bars."""
    figures.class_counts_figure(classes, out / "class_counts.png")
    figures.sizes_figure(images, out / "image_sizes.png")
    figures.properties_figure(property_table(images), out / "file_properties.png")


def write_thumbnails(images: pd.DataFrame, paths: tuple[Path, ...], out: Path, seed: int) -> None:
    """One grid per class: all its images up to ``THUMBS_PER_CLASS``, else a seeded sample
    (shown in file order)."""
    rng = np.random.default_rng(seed)
    labels = images["label"].to_numpy()
    for index, name in enumerate(sorted(set(labels))):
        rows = np.flatnonzero(labels == name)
        if len(rows) > THUMBS_PER_CLASS:
            rows = np.sort(rng.choice(rows, THUMBS_PER_CLASS, replace=False))
        cells = [
            (gallery.thumbnail(paths[row]), Path(images["path"].iat[row]).name) for row in rows
        ]
        title = f"class {name}: {len(cells)} of {int((labels == name).sum())} images"
        gallery.class_grid(
            title, cells, out / "thumbnails" / f"{gallery.file_stem(name, index)}.png"
        )


def write_galleries(pairs: pd.DataFrame, paths: tuple[Path, ...], out: Path) -> list[Path]:
    """One gallery of pairs per scope that has any (leakage, cross-class, within-class)."""
    scope = scope_of(pairs)
    written = []
    for name, title in SCOPES.items():
        chosen = pairs[scope == name].sort_values(["kind", "distance"], kind="stable")
        if not len(chosen):
            continue
        shown = chosen.head(PAIRS_SHOWN)
        rows = [_pair_row(row, paths) for row in shown.itertuples(index=False)]
        heading = f"{title}: {len(shown)} of {len(chosen)} pair(s)"
        written.append(gallery.pair_gallery(heading, rows, out / "duplicates" / f"{name}.png"))
    return written


def _pair_row(pair: object, paths: tuple[Path, ...]) -> gallery.PairRow:
    values = pair._asdict()  # type: ignore[attr-defined]
    kind = "exact copy" if values["kind"] == "exact" else f"near copy ({values['distance']} bits)"
    lines = (
        kind,
        f"left:  {values['label_a']} · {_split_word(values['split_a'])}",
        f"       {values['path_a']}",
        f"right: {values['label_b']} · {_split_word(values['split_b'])}",
        f"       {values['path_b']}",
    )
    return gallery.PairRow(
        gallery.thumbnail(paths[values["row_a"]]), gallery.thumbnail(paths[values["row_b"]]), lines
    )


def _split_word(split: str) -> str:
    return SPLIT_WORDS.get(split, f"fold {split}")
