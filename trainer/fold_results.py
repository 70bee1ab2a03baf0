"""What a fold leaves behind: its best epoch, the checkpoint's metadata, the predictions file,
the holdout report and the summary the callbacks receive."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from trainer.callbacks import FitInfo, FoldInfo
from trainer.data.dataset import Samples
from trainer.metrics import HOLDOUT, best_metrics, split_names

PROB_PREFIX = "prob_"  # a predictions file's probability columns: prob_<class>


@dataclass
class Best:
    """The best epoch so far of one fold."""

    epoch: int = -1
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    epochs_trained: int = 0


def checkpoint_meta(
    info: FitInfo, fold: FoldInfo, best: Best, mean: tuple[float, ...], std: tuple[float, ...]
) -> dict[str, Any]:
    """The JSON beside a checkpoint: what prediction needs to rebuild the model and its input,
    and where the weights came from."""
    config = info.config
    return {
        "backbone": config.model.backbone,
        "class_names": list(info.samples.class_names),
        "image_size": config.train.image_size,
        "mean": list(mean),
        "std": list(std),
        "precision": info.execution.precision,
        "channels_last": info.execution.channels_last,
        "fold": fold.name,
        "epoch": best.epoch,
        "metrics": best.metrics,
        "data_digest": info.data_digest,
        "split_file": str(info.splits.path),
        "config": config.to_dict(),
    }


def predictions_path(fold: FoldInfo) -> Path:
    """Where a fold's evaluation predictions go: the holdout's for the refit."""
    return fold.out_dir / ("test_predictions.csv" if fold.index < 0 else "val_predictions.csv")


def write_predictions(path: Path, samples: Samples, indices: np.ndarray, probs: np.ndarray) -> None:
    """``path,label,predicted,prob_<class>...`` for the images ``indices`` (rows of ``probs``)."""
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["path", "label", "predicted", *(PROB_PREFIX + c for c in samples.class_names)]
        )
        for row, index in enumerate(indices):
            writer.writerow(
                [
                    samples.relative(int(index)),
                    samples.class_names[samples.labels[index]],
                    samples.class_names[int(probs[row].argmax())],
                    *(f"{p:.6f}" for p in probs[row]),
                ]
            )


def read_predictions(path: Path | str, errors: str = "surrogateescape") -> pd.DataFrame:
    """A predictions file as written by ``write_predictions``: paths, labels and predicted
    classes as text (file names' undecodable bytes per ``errors``), probabilities as floats.

    A fit reads each file twice (its confusion matrix, then a gallery), on the tracker's
    writer thread while training goes on: the second read is a copy of the first, unless the
    file changed since."""
    stat = Path(path).stat()
    return _parsed_predictions(str(path), stat.st_mtime_ns, stat.st_size, errors).copy()


@functools.lru_cache(maxsize=16)
def _parsed_predictions(path: str, mtime_ns: int, size: int, errors: str) -> pd.DataFrame:
    # object, not str: pandas' arrow strings refuse the surrogates of undecodable names
    frame = pd.read_csv(path, dtype=object, keep_default_na=False, encoding_errors=errors)
    probs = [c for c in frame.columns if c.startswith(PROB_PREFIX)]
    return frame.astype(dict.fromkeys(probs, float))


def prediction_classes(frame: pd.DataFrame) -> list[str]:
    """The class names of a predictions table, in the order of its probability columns."""
    return [c.removeprefix(PROB_PREFIX) for c in frame.columns if c.startswith(PROB_PREFIX)]


def fold_summary(fold: FoldInfo, best: Best, checkpoint: Path, predictions: Path) -> dict[str, Any]:
    """What ``on_fold_end`` receives: the best epoch, its validation (or holdout) metrics and
    the fold's files."""
    summary: dict[str, Any] = {
        "name": fold.name,
        "best/epoch": best.epoch,
        "epochs_trained": best.epochs_trained,
        "checkpoint": str(checkpoint),
        "predictions": str(predictions),
    }
    summary.update(best_metrics(best.metrics))
    summary.update({k: best.metrics[k] for k in split_names(HOLDOUT) if k in best.metrics})
    return summary


def holdout_report(
    truth: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Per-class precision, recall and support on the holdout, and its confusion matrix."""
    predicted = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    return {
        f"{HOLDOUT}/per_class": {
            name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, support, strict=True)
        },
        f"{HOLDOUT}/confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }


def fit_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """``cv/*`` of the folds, ``test/*`` and per-class precision and recall of the refit."""
    scalars = {k: float(v) for k, v in summary.items() if k.startswith("cv/")}
    refit = summary.get("refit", {})
    scalars.update(
        {
            k: float(v)
            for k, v in refit.items()
            if k.startswith(f"{HOLDOUT}/") and isinstance(v, int | float)
        }
    )
    for name, scores in refit.get(f"{HOLDOUT}/per_class", {}).items():
        scalars[f"{HOLDOUT}/precision/{name}"] = scores["precision"]
        scalars[f"{HOLDOUT}/recall/{name}"] = scores["recall"]
    return scalars


def model_checkpoint_dir(summary: dict[str, Any]) -> Path:
    """The folder of the fit's model: the refit's, else the best fold's checkpoint."""
    if "refit" in summary:
        return Path(summary["refit"]["checkpoint"]).parent
    best = max(summary["folds"], key=lambda fold: fold["best/val_acc"])
    return Path(best["checkpoint"]).parent
