"""The per-epoch metric names and how the engine's results are renamed and filtered."""

from __future__ import annotations

from trainer.metrics import (
    EPOCH_METRICS,
    QUALITY_METRICS,
    TIMING_METRICS,
    best_metrics,
    describe_epoch,
    epoch_metrics,
    split_metrics,
)

TRAIN = {"loss": 0.5, "acc": 0.75, "lr": 1e-3, "seconds": 2.0, "images_per_second": 64.0}
VAL = {"loss": 0.25, "acc": 0.875}


def test_an_epoch_is_reported_under_the_defined_names() -> None:
    assert epoch_metrics(TRAIN, VAL) == {
        "train/loss": 0.5,
        "train/acc": 0.75,
        "lr": 1e-3,
        "epoch/seconds": 2.0,
        "epoch/images_per_second": 64.0,
        "val/loss": 0.25,
        "val/acc": 0.875,
    }
    assert tuple(epoch_metrics(TRAIN, VAL)) == EPOCH_METRICS
    assert set(epoch_metrics(TRAIN)) == set(EPOCH_METRICS) - {"val/loss", "val/acc"}
    assert set(QUALITY_METRICS) | set(TIMING_METRICS) == set(EPOCH_METRICS)
    assert not set(QUALITY_METRICS) & set(TIMING_METRICS)


def test_holdout_and_best_names() -> None:
    assert split_metrics(VAL, "test") == {"test/loss": 0.25, "test/acc": 0.875}
    assert best_metrics(epoch_metrics(TRAIN, VAL)) == {"best/val_loss": 0.25, "best/val_acc": 0.875}
    assert best_metrics(epoch_metrics(TRAIN)) == {}


def test_the_epoch_log_line() -> None:
    assert describe_epoch(epoch_metrics(TRAIN, VAL)) == (
        "train loss 0.5000 acc 0.7500 | val loss 0.2500 acc 0.8750 | lr 1.00e-03 | 2.0 s, 64 img/s"
    )
    assert describe_epoch(epoch_metrics(TRAIN)) == (
        "train loss 0.5000 acc 0.7500 | lr 1.00e-03 | 2.0 s, 64 img/s"
    )
