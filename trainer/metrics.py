"""Per-epoch metrics: the one definition of their names.

The engine returns plain keys (``train_one_epoch``: ``TRAIN_KEYS``; ``evaluate``:
``EVAL_KEYS``). Each epoch of a fold is reported to the callbacks under the names built here
(``train/loss``, ``val/acc``, ``lr``, ``epoch/seconds``...), which trackers log as they are.
Logging a new per-epoch metric: compute it in ``trainer.engine`` and name it here; callbacks,
trackers, tests and benchmarks take the names from this module.
"""

from __future__ import annotations

# train_one_epoch's keys and the name each is reported under.
TRAIN_NAMES: dict[str, str] = {
    "loss": "train/loss",
    "acc": "train/acc",
    "lr": "lr",
    "seconds": "epoch/seconds",
    "images_per_second": "epoch/images_per_second",
}
TRAIN_KEYS: tuple[str, ...] = tuple(TRAIN_NAMES)
EVAL_KEYS: tuple[str, ...] = ("loss", "acc")  # evaluate's keys, reported as <split>/<key>
VALIDATION = "val"  # the folds' validation images, evaluated every epoch
HOLDOUT = "test"  # the holdout, evaluated once after the refit

EPOCH_METRICS: tuple[str, ...] = (
    *TRAIN_NAMES.values(),
    *(f"{VALIDATION}/{key}" for key in EVAL_KEYS),
)
TIMING_METRICS: tuple[str, ...] = (TRAIN_NAMES["seconds"], TRAIN_NAMES["images_per_second"])
# What identical runs reproduce exactly (timings differ from run to run).
QUALITY_METRICS: tuple[str, ...] = tuple(m for m in EPOCH_METRICS if m not in TIMING_METRICS)
SELECTION_METRIC = f"{VALIDATION}/acc"  # picks a fold's best epoch (and stops early)


def split_names(split: str) -> tuple[str, ...]:
    """The names ``evaluate``'s results take on ``split`` (``VALIDATION`` or ``HOLDOUT``)."""
    return tuple(f"{split}/{key}" for key in EVAL_KEYS)


def epoch_metrics(
    train: dict[str, float], validation: dict[str, float] | None = None
) -> dict[str, float]:
    """An epoch's metrics as reported: ``train_one_epoch``'s results renamed, then
    ``evaluate``'s on the validation images (none in the refit)."""
    metrics = {TRAIN_NAMES[key]: train[key] for key in TRAIN_KEYS}
    if validation is not None:
        metrics.update(split_metrics(validation, VALIDATION))
    return metrics


def split_metrics(results: dict[str, float], split: str) -> dict[str, float]:
    """``evaluate``'s results named for ``split``."""
    return dict(zip(split_names(split), (results[key] for key in EVAL_KEYS), strict=True))


def best_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A fold summary's ``best/val_<key>`` of its best epoch (nothing without validation)."""
    if SELECTION_METRIC not in metrics:
        return {}
    return {f"best/{VALIDATION}_{key}": metrics[f"{VALIDATION}/{key}"] for key in EVAL_KEYS}


def describe_epoch(metrics: dict[str, float]) -> str:
    """The epoch's log line after its number: train and validation results, rate, time."""
    train = {key: metrics[name] for key, name in TRAIN_NAMES.items()}
    val = ""
    if SELECTION_METRIC in metrics:
        loss, acc = metrics[f"{VALIDATION}/loss"], metrics[f"{VALIDATION}/acc"]
        val = f" | val loss {loss:.4f} acc {acc:.4f}"
    return (
        f"train loss {train['loss']:.4f} acc {train['acc']:.4f}{val} | lr {train['lr']:.2e} | "
        f"{train['seconds']:.1f} s, {train['images_per_second']:.0f} img/s"
    )
