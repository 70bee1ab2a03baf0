"""Fit events for trackers and pruners: a small protocol, in the spirit of Lightning's Callback.

The fit loop calls these hooks in order::

    on_fit_start  (on_fold_start  (on_epoch_end on_checkpoint?)*  on_fold_end)*
    on_fit_end | on_fit_error

``on_checkpoint`` comes after every epoch only with ``tracking.log_checkpoints: all``.

Folds are named ``fold-0``, ``fold-1``, ... and the final training on all non-test data is
``refit``. A callback may raise from ``on_epoch_end`` to stop the fit (a pruner does); the fit
then calls ``on_fit_error`` on every callback and re-raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.config import Config
    from trainer.data.dataset import Samples
    from trainer.data.scan import BadImage
    from trainer.data.splits import Splits
    from trainer.runtime import Execution


@dataclass(frozen=True)
class FitInfo:
    """What a fit is about to do, for callbacks that record or steer it."""

    config: Config  # the resolved configuration
    samples: Samples  # every image (holdout included) with labels and class names
    splits: Splits  # holdout and folds
    data_digest: str  # SHA-256 of the image files, paths and labels
    execution: Execution  # device, precision, memory format
    run_dir: Path  # where this fit writes its files
    n_folds: int  # number of cross-validation folds
    skipped: tuple[BadImage, ...] = ()  # unreadable images left out (data.on_bad_image=skip)


@dataclass(frozen=True)
class FoldInfo:
    """One fold (or the refit) about to train."""

    name: str  # fold-0, fold-1, ... or refit
    index: int  # 0.. for folds, -1 for the refit
    n_train: int  # training images
    n_eval: int  # validation images (holdout images for the refit)
    epochs: int  # epochs it will train at most
    out_dir: Path  # where its checkpoint and predictions are written


class Callback:
    """Base class: override the hooks you need; each is a no-op here."""

    def on_fit_start(self, info: FitInfo) -> None:
        """Before the first fold."""

    def on_fold_start(self, fold: FoldInfo) -> None:
        """Before a fold (or the refit) trains."""

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        """After an epoch; ``metrics`` are named in ``trainer.metrics`` (``EPOCH_METRICS``;
        the refit has no validation metrics)."""

    def on_checkpoint(self, fold: FoldInfo, epoch: int, directory: Path) -> None:
        """An epoch's checkpoint was written to ``directory`` (``log_checkpoints: all``)."""

    def on_fold_end(self, fold: FoldInfo, summary: dict[str, Any]) -> None:
        """After a fold: best metrics, epochs trained, and file paths under ``fold.out_dir``."""

    def on_fit_end(self, summary: dict[str, Any]) -> None:
        """After the last fold (and refit), with the run summary."""

    def on_fit_error(self, error: BaseException) -> None:
        """The fit stopped with ``error`` (including KeyboardInterrupt); it is re-raised after."""


class CallbackList(Callback):
    """Calls every callback in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, info: FitInfo) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(info)

    def on_fold_start(self, fold: FoldInfo) -> None:
        for callback in self.callbacks:
            callback.on_fold_start(fold)

    def on_epoch_end(self, fold: FoldInfo, epoch: int, metrics: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(fold, epoch, metrics)

    def on_checkpoint(self, fold: FoldInfo, epoch: int, directory: Path) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(fold, epoch, directory)

    def on_fold_end(self, fold: FoldInfo, summary: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_fold_end(fold, summary)

    def on_fit_end(self, summary: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(summary)

    def on_fit_error(self, error: BaseException) -> None:
        for callback in self.callbacks:
            callback.on_fit_error(error)
