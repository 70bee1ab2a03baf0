"""Where a study trial's seconds go besides its training epochs, measured from the outside.

``TrialCosts`` wraps library functions with timers for the length of a ``with`` block (the
library is not edited for the bench, as ``bench.tracking_overhead.TimedHooks`` wraps hooks):
data scan, split read, execution choice, model creation, cache opening and decodes, MLflow run
creation and hooks, checkpoint writing, Optuna's storage. Each ``studies run`` loop iteration
(from ``fail_stale_trials`` to the next one) is one trial record; a trial's *fixed cost* is its
wall time less its epochs (train + validate) net of the decodes inside them, which count as
cache warm-up. The decoded-image cache must make every decode a trial's first of its size.
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# (module, attribute or Class.method, component). Components are disjoint: none runs inside
# another, except "decode", which runs inside "epochs" and is subtracted from it.
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("studies.runner", "fail_stale_trials", "optuna: stale-trial check"),
    ("studies.runner", "reserve_trial", "optuna: reserve trial"),
    ("studies.reservations", "claim", "optuna: claim trial"),
    ("studies.objective", "suggest", "optuna: sample"),
    ("studies.pruning", "PruningCallback.on_epoch_end", "optuna: pruning reports"),
    ("studies.pruning", "PruningCallback.on_fold_end", "optuna: pruning reports"),
    ("studies.tracking", "StudyTracker.start_trial", "mlflow: create trial run + params"),
    ("studies.tracking", "StudyTracker.end_trial", "mlflow: end trial run"),
    ("studies.tracking", "StudyTracker.update_best", "mlflow: best on study run"),
    ("trainer.tracking.tracker", "MlflowTracker.__init__", "mlflow: tracker start"),
    ("trainer.tracking.tracker", "MlflowTracker.on_fit_start", "mlflow: fit start (params)"),
    ("trainer.tracking.tracker", "MlflowTracker.on_fold_start", "mlflow: fold runs"),
    ("trainer.tracking.tracker", "MlflowTracker.on_epoch_end", "mlflow: epoch metrics"),
    ("trainer.tracking.tracker", "MlflowTracker.on_checkpoint", "mlflow: checkpoint/figures"),
    ("trainer.tracking.tracker", "MlflowTracker.on_fold_end", "mlflow: checkpoint/figures"),
    ("trainer.tracking.tracker", "MlflowTracker.on_fit_end", "mlflow: end of fit"),
    ("trainer.tracking.tracker", "MlflowTracker.on_fit_error", "mlflow: end of pruned fit"),
    ("studies.objective", "trial_config", "config"),
    ("trainer.fit", "create_probe", "model: probe"),
    ("trainer.fit", "find_samples", "data scan"),
    ("trainer.fit", "fingerprint", "data scan"),
    ("trainer.fit", "find_bad_images", "data scan"),
    ("trainer.fit", "apply_policy", "data scan"),
    ("trainer.fit", "load_or_create_splits", "split read"),
    ("trainer.fit", "resolve_execution", "execution choice"),
    ("trainer.fit", "_new_run_dir", "run folder + config"),
    ("trainer.fit", "save_config", "run folder + config"),
    ("trainer.fit", "_warn_about_data", "explore findings"),
    ("trainer.data.cache", "CacheRegistry.get", "cache open"),
    ("trainer.folds", "FoldRunner._build", "model + loaders per fold"),
    ("trainer.folds", "FoldRunner._epoch", "epochs"),
    ("trainer.folds", "save_checkpoint", "checkpoint + predictions files"),
    ("trainer.folds", "write_predictions", "checkpoint + predictions files"),
    ("trainer.data.images", "read_rgb", "decode"),
)
COUNTED = ("trainer.data.cache", "ImageCache.get")  # every image read: cache hit or decode
# Calls inside the components above, timed and counted on their own (they overlap them).
CLIENT_CALLS = "create_run log_batch log_artifact log_artifacts log_inputs set_tag set_terminated"
DETAILS: tuple[tuple[str, str], ...] = (
    *(("mlflow.tracking.client", f"MlflowClient.{name}") for name in CLIENT_CALLS.split()),
    ("trainer.plots", "learning_curves"),
    ("trainer.plots", "confusion_matrix_plot"),
    ("trainer.tracking.tracker", "write_galleries"),
    ("trainer.tracking.tracker", "log_dataset"),
    ("trainer.fit", "fingerprint"),
    ("trainer.fit", "find_bad_images"),
    ("optuna.study.study", "Study.tell"),
)


class TrialCosts:
    """Timers around ``TARGETS`` while active; one record of seconds per study trial."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._restore: list[tuple[Any, str, Any]] = []

    @contextmanager
    def active(self) -> Iterator[TrialCosts]:
        """Wrap the targets for the block; the last trial record is closed on exit."""
        for module, name, component in TARGETS:
            self._wrap(module, name, self._timer(component, opens=name == "fail_stale_trials"))
        self._wrap(*COUNTED, self._counter)
        for module, name in DETAILS:
            self._wrap(module, name, self._detail(name))
        try:
            yield self
        finally:
            self._close(time.perf_counter())
            for owner, name, original in reversed(self._restore):
                setattr(owner, name, original)
            self._restore.clear()

    def _wrap(self, module: str, dotted: str, make: Callable[[Any], Any]) -> None:
        owner: Any = importlib.import_module(module)
        *classes, name = dotted.split(".")
        for cls in classes:
            owner = getattr(owner, cls)
        original = owner.__dict__.get(name) if classes else getattr(owner, name, None)
        if original is None:  # renamed in the library: that component is simply not measured
            return
        self._restore.append((owner, name, original))
        setattr(owner, name, make(original))

    def _timer(self, component: str, opens: bool) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                if opens:
                    self._open(start)
                result = None
                try:
                    result = original(*args, **kwargs)
                    return result
                finally:
                    if self._current is not None:
                        if component == "optuna: sample":
                            self._current["params"] = result
                        self._current["seconds"][component] += time.perf_counter() - start
                        if component == "decode":
                            self._current["decodes"] += 1

            return timed

        return make

    def _detail(self, name: str) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    if self._current is not None:
                        seconds_calls = self._current["detail"][name]
                        seconds_calls[0] += time.perf_counter() - start
                        seconds_calls[1] += 1

            return timed

        return make

    def _counter(self, original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self._current is not None:
                self._current["reads"] += 1
            return original(*args, **kwargs)

        return counted

    def _open(self, now: float) -> None:
        self._close(now)
        self._current = {
            "start": now,
            "seconds": defaultdict(float),
            "detail": defaultdict(lambda: [0.0, 0]),
            "reads": 0,
            "decodes": 0,
        }

    def _close(self, now: float) -> None:
        record, self._current = self._current, None
        if record is None or "epochs" not in record["seconds"]:
            return  # an iteration that ran no trial (nothing left to reserve)
        seconds = dict(record.pop("seconds"))
        record["detail"] = dict(record["detail"])
        wall = now - record.pop("start")
        training = seconds["epochs"] - seconds.get("decode", 0.0)
        named = sum(v for k, v in seconds.items() if k not in ("epochs", "decode"))
        seconds["other"] = wall - seconds["epochs"] - named
        record.update(wall=wall, training=training, fixed=wall - training, seconds=seconds)
        self.records.append(record)

    def tag_last(self, count: int, **values: Any) -> None:
        """Attach ``values`` (e.g. the image size) to the last ``count`` trial records."""
        for record in self.records[-count:] if count else []:
            record.update(values)


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of ``values`` (None when empty)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Fixed cost per trial, the median seconds per component, and the cache's hits/decodes."""
    components = sorted({k for r in records for k in r["seconds"]})
    seen: set[Any] = set()
    redecoded = 0
    for record in records:
        key = (record.get("study"), (record.get("params") or {}).get("train.image_size"))
        redecoded += int(record["decodes"] > 0 and key in seen)
        seen.add(key)
    reads = sum(r["reads"] for r in records)
    decodes = sum(r["decodes"] for r in records)
    return {
        "trials": len(records),
        "fixed_seconds": spread([r["fixed"] for r in records]),
        "fixed_share_of_trial": spread([r["fixed"] / r["wall"] for r in records if r["wall"]]),
        "training_seconds": spread([r["training"] for r in records]),
        "component_median_seconds": {
            name: statistics.median(r["seconds"].get(name, 0.0) for r in records)
            for name in components
        },
        "component_total_seconds": {
            name: sum(r["seconds"].get(name, 0.0) for r in records) for name in components
        },
        "call_median_seconds_and_calls": {
            name: [
                statistics.median(r["detail"].get(name, (0.0, 0))[0] for r in records),
                statistics.median(r["detail"].get(name, (0.0, 0))[1] for r in records),
            ]
            for name in sorted({k for r in records for k in r.get("detail", {})})
        },
        "cache": {
            "reads": reads,
            "decodes": decodes,
            "hits": reads - decodes,
            "trials_that_decoded": sum(r["decodes"] > 0 for r in records),
            "trials_redecoding_a_seen_size": redecoded,
        },
    }


PROBED = 0.05  # seconds of "execution choice" above which the trial ran the mode probe


def fixed_by_kind(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The fixed cost per trial split three ways: warm-up trials (the first of their study in
    this process, or one that decoded images or timed the execution modes for a new backbone
    and size), and the warm trials that were pruned or completed."""
    kinds: dict[str, list[float]] = {"warm-up": [], "warm, pruned": [], "warm, complete": []}
    studies: set[Any] = set()
    for record in records:
        first = record.get("study") not in studies
        studies.add(record.get("study"))
        if first or record["decodes"] or record["seconds"].get("execution choice", 0) > PROBED:
            kinds["warm-up"].append(record["fixed"])
        elif "mlflow: end of pruned fit" in record["seconds"]:
            kinds["warm, pruned"].append(record["fixed"])
        else:
            kinds["warm, complete"].append(record["fixed"])
    return {kind: spread(values) for kind, values in kinds.items()}


def process_start_seconds(repeats: int = 3) -> dict[str, Any]:
    """Wall seconds for a fresh Python to import what a ``studies run`` worker imports."""
    modules = "studies.runner, studies.objective, trainer.fit, trainer.tracking.tracker, timm"
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
        seconds.append(time.perf_counter() - start)
    return spread(seconds)
