"""Pictures of predictions: misclassified holdout images and likely label errors.

Both are ranked from the predictions files a fit writes (``trainer.fold_results``), with no
tracking library; the tracker logs what ``write_galleries`` writes.

- Misclassified: the holdout images the refit got wrong, the most-confused (true, predicted)
  pairs first and, within a pair, the most confident mistakes first.
- Likely label errors: the cross-validation's out-of-fold predictions (with 2 folds or more
  every non-test image is in exactly one fold's validation set, so each is judged by a model
  that never trained on it) ranked by the probability of each image's given label, lowest
  first: the self-confidence score of confident learning (Northcutt et al., 2021).

Each gallery is a PNG sheet drawn by ``trainer.explore.gallery.caption_grid`` and a CSV of the
same rows in the same order, image paths relative to the data root as in the predictions files.
Scores: ``confidence`` is the probability of the predicted class, ``self_confidence`` that of
the given label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.data.dataset import printable
from trainer.explore.gallery import caption_grid, thumbnail
from trainer.fold_results import PROB_PREFIX, prediction_classes, read_predictions

log = logging.getLogger(__name__)

SHOWN = 48  # images per gallery
FOLDER = "galleries"  # in the fit's run folder and its run's artifacts
MISCLASSIFIED = "misclassified"  # galleries/misclassified.{png,csv}
LABEL_ISSUES = "label_issues"  # galleries/label_issues.{png,csv}
MIN_FOLDS = 2  # out-of-fold predictions cover every non-test image only from 2 folds on


def scored(frame: pd.DataFrame) -> pd.DataFrame:
    """``path, label, predicted, confidence, self_confidence`` of a predictions table."""
    classes = prediction_classes(frame)
    probs = frame[[PROB_PREFIX + c for c in classes]].to_numpy(dtype=float)
    column = {name: index for index, name in enumerate(classes)}
    given, predicted = frame["label"].map(column), frame["predicted"].map(column)
    unknown = frame.loc[given.isna() | predicted.isna(), ["label", "predicted"]]
    if len(unknown):
        raise ValueError(f"labels {unknown.iloc[0].tolist()} are not among the classes {classes}")
    rows = np.arange(len(frame))
    return frame[["path", "label", "predicted"]].assign(
        confidence=probs[rows, predicted.to_numpy(dtype=int)],
        self_confidence=probs[rows, given.to_numpy(dtype=int)],
    )


def misclassified(frame: pd.DataFrame, limit: int = SHOWN) -> pd.DataFrame:
    """The wrong predictions of ``frame``, most-confused pairs first (``pair_count`` images of
    that true and predicted class), then the most confident first; at most ``limit``."""
    table = scored(frame)
    wrong = table[table["label"] != table["predicted"]]
    wrong = wrong.assign(pair_count=wrong.groupby(["label", "predicted"])["path"].transform("size"))
    order = ["pair_count", "label", "predicted", "confidence", "path"]
    wrong = _sorted(wrong, order, descending={"pair_count", "confidence"})
    return _ranked(wrong, limit)


def label_issues(folds: Mapping[str, pd.DataFrame], limit: int = SHOWN) -> pd.DataFrame:
    """The out-of-fold predictions of ``folds`` (fold name -> its validation predictions), the
    lowest probability of the given label first; at most ``limit``. An image predicted in two
    folds is refused: these are not out-of-fold predictions of one cross-validation."""
    table = pd.concat(
        [scored(frame).assign(fold=name) for name, frame in folds.items()], ignore_index=True
    )
    repeated = table.loc[table["path"].duplicated(), "path"]
    if len(repeated):
        raise ValueError(f"{repeated.iat[0]} has predictions from more than one fold")
    table = _sorted(table, ["self_confidence", "path"], descending=set())
    return _ranked(table, limit)


def _sorted(table: pd.DataFrame, columns: list[str], descending: set[str]) -> pd.DataFrame:
    """``table`` ordered by ``columns`` (numbers in ``descending`` largest first). Sorted in
    Python: undecodable file names carry surrogates, which pandas' arrow strings refuse."""

    def key(column: str, value: object) -> object:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        return -float(value) if column in descending else float(value)  # type: ignore[arg-type]

    rows = [
        tuple(key(c, v) for c, v in zip(columns, values, strict=True))
        for values in zip(*(table[c].tolist() for c in columns), strict=True)
    ]
    order = sorted(range(len(rows)), key=rows.__getitem__)
    return table.iloc[order]


def write_galleries(
    summary: Mapping[str, Any], root: Path, out: Path, limit: int = SHOWN
) -> list[Path]:
    """The galleries a fit's ``summary`` allows, as PNG and CSV under ``out``: misclassified
    holdout images when it refit, likely label errors when it cross-validated 2 folds or more.
    ``root`` is the data root the predictions' paths are relative to."""
    written: list[Path] = []
    if "refit" in summary:
        holdout = read_predictions(summary["refit"]["predictions"])
        table = misclassified(holdout, limit)
        wrong = int((holdout["label"] != holdout["predicted"]).sum())
        title = (
            f"Misclassified holdout images: {wrong} of {len(holdout)} "
            f"(showing {len(table)}), most-confused pairs first"
        )
        written += _gallery(table, title, _mistake_lines, root, out / MISCLASSIFIED)
    folds = summary.get("folds", [])
    if len(folds) >= MIN_FOLDS:
        out_of_fold = {f["name"]: read_predictions(f["predictions"]) for f in folds}
        table = label_issues(out_of_fold, limit)
        title = (
            f"Likely label errors: {len(table)} of {sum(map(len, out_of_fold.values()))} "
            "images, the lowest out-of-fold probability of their label first"
        )
        written += _gallery(table, title, _issue_lines, root, out / LABEL_ISSUES)
    return written


def _ranked(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    shown = table.head(limit).reset_index(drop=True)
    return shown.assign(rank=np.arange(1, len(shown) + 1))


def _gallery(
    table: pd.DataFrame,
    title: str,
    lines: Callable[[Any], list[str]],
    root: Path,
    stem: Path,
) -> list[Path]:
    """``stem.png`` (a thumbnail and caption lines per row) and ``stem.csv`` (the rows)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns = ["rank", *(c for c in table.columns if c != "rank")]
    csv = stem.with_suffix(".csv")
    table[columns].to_csv(csv, index=False, encoding="utf-8", errors="surrogateescape")
    cells = [(thumbnail(root / row.path), lines(row)) for row in table.itertuples()]
    png = caption_grid(title, cells, stem.with_suffix(".png"))
    log.info("%s: %d images", png.name, len(table))
    return [png, csv]


def _mistake_lines(row: Any) -> list[str]:
    return [
        printable(Path(row.path).name),
        f"true {printable(row.label)}",
        f"pred {printable(row.predicted)}",
        f"confidence {row.confidence:.2f}",
    ]


def _issue_lines(row: Any) -> list[str]:
    return [
        printable(Path(row.path).name),
        f"label {printable(row.label)}",
        f"oof pred {printable(row.predicted)}",
        f"p(label) {row.self_confidence:.3f}",
    ]
