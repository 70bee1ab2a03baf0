"""Train one fold (or the refit): model, loaders, epochs, early stopping, best checkpoint."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.callbacks import Callback, FitInfo, FoldInfo
from trainer.config import Config
from trainer.data.cache import ImageCache
from trainer.data.loader import ImageSubset, LoaderSettings, make_loader, set_epoch
from trainer.data.transforms import Pipeline
from trainer.engine import Normalize, evaluate, train_one_epoch
from trainer.fold_results import (
    Best,
    checkpoint_meta,
    fold_summary,
    holdout_report,
    predictions_path,
    write_predictions,
)
from trainer.metrics import (
    HOLDOUT,
    SELECTION_METRIC,
    describe_epoch,
    epoch_metrics,
    split_metrics,
)
from trainer.model.backbone import create_model, to_device
from trainer.model.checkpoint import copy_state, save_checkpoint
from trainer.model.optim import create_optimizer, create_scheduler
from trainer.progress import EpochBar
from trainer.runtime import seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Parts:
    """What one fold trains with."""

    model: nn.Module
    train_loader: Any
    val_loader: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any


@dataclass(frozen=True)
class FoldRunner:
    """Trains folds of one prepared fit."""

    info: FitInfo
    cache: ImageCache
    train_pipeline: Pipeline
    eval_pipeline: Pipeline
    normalize: Normalize  # uint8 batches to the model's input, on the device (backbone's mean/std)
    loading: LoaderSettings

    def run_fold(self, k: int, events: Callback) -> dict[str, Any]:
        """Train fold ``k`` with early stopping; keep and save its best epoch."""
        train_idx, val_idx = self.info.splits.fold(k)
        fold = self._fold_info(f"fold-{k}", k, train_idx, val_idx, self.info.config.train.epochs)
        _, best = self._train(fold, train_idx, val_idx, events)
        return self._finish(fold, best, val_idx, events)

    def run_refit(self, epochs: int, events: Callback) -> dict[str, Any]:
        """Train on all non-test images for ``epochs``, then evaluate on the holdout."""
        train_idx, test_idx = self.info.splits.trainval, self.info.splits.test
        fold = self._fold_info("refit", -1, train_idx, test_idx, epochs)
        model, best = self._train(fold, train_idx, None, events)
        test_loader = self._loader(test_idx, False, -1)
        loss_fn, execution = self._eval_args()
        metrics, probs, truth = evaluate(model, test_loader, loss_fn, execution, self.normalize)
        best.metrics.update(split_metrics(metrics, HOLDOUT))
        best.probs = probs
        summary = self._finish(fold, best, test_idx, events)
        summary.update(holdout_report(truth, probs, self.info.samples.class_names))
        log.info("refit: holdout accuracy %.4f on %d images", metrics["acc"], len(test_idx))
        return summary

    def _train(
        self, fold: FoldInfo, train_idx: np.ndarray, val_idx: np.ndarray | None, events: Callback
    ) -> tuple[nn.Module, Best]:
        parts = self._build(fold, train_idx, val_idx)
        events.on_fold_start(fold)
        best, patience = Best(), self.info.config.train.early_stopping_patience
        for epoch in range(fold.epochs):
            metrics, probs = self._epoch(fold, epoch, parts)
            log.info(
                "%s epoch %d/%d: %s", fold.name, epoch + 1, fold.epochs, describe_epoch(metrics)
            )
            events.on_epoch_end(fold, epoch, metrics)
            if self._every_epoch_checkpoint:
                self._checkpoint_epoch(fold, epoch, parts.model, metrics, events)
            if _keeps(parts, metrics, best, last_epoch=epoch == fold.epochs - 1):
                best = Best(epoch, dict(metrics), copy_state(parts.model), probs)
            elif patience is not None and epoch - best.epoch >= patience:
                log.info(
                    "%s: early stop after epoch %d (best %d)", fold.name, epoch + 1, best.epoch + 1
                )
                break
        best.epochs_trained = epoch + 1
        parts.model.load_state_dict(best.state)
        return parts.model, best

    def _build(self, fold: FoldInfo, train_idx: np.ndarray, val_idx: np.ndarray | None) -> _Parts:
        config = self.info.config
        seed_everything(
            self._seed(fold.index), config.runtime.deterministic, config.runtime.cudnn_benchmark
        )
        model = create_model(config.model, len(self.info.samples.class_names))
        model = to_device(model, self.info.execution.device, self.info.execution.channels_last)
        train_loader = self._loader(train_idx, True, fold.index)
        optimizer = create_optimizer(model, config.train)
        return _Parts(
            model=model,
            train_loader=train_loader,
            val_loader=None if val_idx is None else self._loader(val_idx, False, fold.index),
            optimizer=optimizer,
            scheduler=create_scheduler(optimizer, config.train, len(train_loader), fold.epochs),
        )

    def _epoch(
        self, fold: FoldInfo, epoch: int, parts: _Parts
    ) -> tuple[dict[str, float], np.ndarray]:
        """Train one epoch and validate; returns the metrics and the validation probabilities."""
        loss_fn, execution = self._eval_args()
        set_epoch(parts.train_loader, epoch)
        description = f"{fold.name} {epoch + 1}/{fold.epochs}"
        with EpochBar(
            len(parts.train_loader), description, self.info.config.runtime.progress
        ) as bar:
            train = train_one_epoch(
                parts.model,
                parts.train_loader,
                parts.optimizer,
                parts.scheduler,
                loss_fn,
                execution,
                bar,
                self.normalize,
            )
        if parts.val_loader is None:
            return epoch_metrics(train), np.zeros((0, 0))
        val, probs, _ = evaluate(parts.model, parts.val_loader, loss_fn, execution, self.normalize)
        return epoch_metrics(train, val), probs

    def _checkpoint_epoch(
        self,
        fold: FoldInfo,
        epoch: int,
        model: nn.Module,
        metrics: dict[str, float],
        events: Callback,
    ) -> None:
        directory = fold.out_dir / "epochs" / f"epoch-{epoch:03d}"
        save_checkpoint(directory, copy_state(model), self._meta(fold, Best(epoch, metrics)))
        events.on_checkpoint(fold, epoch, directory)

    @property
    def _every_epoch_checkpoint(self) -> bool:
        tracking = self.info.config.tracking
        return tracking.enabled and tracking.log_checkpoints == "all"

    def _finish(
        self, fold: FoldInfo, best: Best, eval_idx: np.ndarray, events: Callback
    ) -> dict[str, Any]:
        checkpoint = save_checkpoint(fold.out_dir, best.state, self._meta(fold, best))
        predictions = predictions_path(fold)
        write_predictions(predictions, self.info.samples, eval_idx, best.probs)
        summary = fold_summary(fold, best, checkpoint.weights, predictions)
        events.on_fold_end(fold, summary)
        return summary

    def _meta(self, fold: FoldInfo, best: Best) -> dict[str, Any]:
        return checkpoint_meta(self.info, fold, best, self.normalize.mean, self.normalize.std)

    def _fold_info(
        self, name: str, index: int, train_idx: np.ndarray, eval_idx: np.ndarray, epochs: int
    ) -> FoldInfo:
        return FoldInfo(
            name, index, len(train_idx), len(eval_idx), epochs, self.info.run_dir / name
        )

    def _loader(self, indices: np.ndarray, train: bool, fold_index: int) -> Any:
        config = self.info.config
        batch_size = config.train.batch_size
        if train and batch_size > len(indices):
            log.warning(
                "train.batch_size %d exceeds the %d training images; using %d",
                batch_size,
                len(indices),
                len(indices),
            )
            batch_size = len(indices)
        pipeline = self.train_pipeline if train else self.eval_pipeline
        subset = ImageSubset(self.cache, self.info.samples.labels, indices, pipeline)
        batch_size = batch_size if train else batch_size * 2
        return make_loader(subset, batch_size, train, self._seed(fold_index), self.loading)

    def _seed(self, fold_index: int) -> int:
        """Fold k uses seed + k; the refit (index -1) uses seed + number of folds."""
        return self.info.config.seed + (fold_index if fold_index >= 0 else self.info.n_folds)

    def _eval_args(self) -> tuple[nn.Module, Any]:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=self.info.config.train.label_smoothing)
        return loss_fn, self.info.execution


def _keeps(parts: _Parts, metrics: dict[str, float], best: Best, last_epoch: bool) -> bool:
    """Whether this epoch's weights become the fold's result: a better validation accuracy,
    or (the refit, without validation) the last epoch."""
    if parts.val_loader is None:
        return last_epoch
    return metrics[SELECTION_METRIC] > best.metrics.get(SELECTION_METRIC, -1.0)


def refit_epochs(config: Config, folds: list[dict[str, Any]]) -> int:
    """Epochs for the refit: ``train.refit_epochs``, else the folds' mean best epoch with early
    stopping on, else ``train.epochs``."""
    if config.train.refit_epochs is not None:
        return config.train.refit_epochs
    if config.train.early_stopping_patience is not None:
        return max(1, math.floor(float(np.mean([f["best/epoch"] for f in folds])) + 0.5) + 1)
    return config.train.epochs
