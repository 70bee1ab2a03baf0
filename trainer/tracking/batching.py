"""Metric writes in batches: each store call costs ~10 ms of CPU, taken from training on a
small machine, so a fold's epoch metrics are held back and written together at most every
``tracking.metrics_seconds`` (an epoch longer than that is written as it ends)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar

from mlflow.entities import Metric

from trainer.tracking.store import metric_key

T = TypeVar("T")

MAX_METRICS = 1000  # MLflow's limits per log_batch call
MAX_PARAMS = 100


def metrics_at(values: dict[str, float], step: int, model_id: str | None = None) -> list[Metric]:
    """``values`` as MLflow metrics at ``step`` (linked to ``model_id`` if given), timed now."""
    now = int(time.time() * 1000)
    return [Metric(metric_key(k), float(v), now, step, model_id) for k, v in values.items()]


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in pieces of at most ``size`` for one call each (at least one, maybe empty)."""
    return [items[start : start + size] for start in range(0, len(items) or 1, size)]


class EpochBatch:
    """The epoch metrics of one fold not handed to the writer yet."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds  # the longest an epoch's metrics wait for the next write
        self.metrics: list[Metric] = []
        self.since = time.monotonic()  # when the fold started or its metrics were last taken

    def restart(self) -> None:
        """A new fold: nothing held, the clock from now."""
        self.metrics, self.since = [], time.monotonic()

    def add(self, values: dict[str, float], epoch: int) -> list[Metric]:
        """Hold an epoch's metrics; returns everything held once it is time to write it."""
        self.metrics += metrics_at(values, step=epoch)
        return self.take() if time.monotonic() - self.since >= self.seconds else []

    def take(self) -> list[Metric]:
        """Everything held, which the caller writes; the clock restarts."""
        taken = self.metrics
        self.restart()
        return taken
