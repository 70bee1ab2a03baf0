"""Cross-validated fine-tuning: prepare the data once, train every fold, then refit if asked.

``fit(config, callbacks)`` is the public entry point. It returns a plain summary dict and
reports every fold and epoch to the callbacks (trackers, pruners).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.callbacks import Callback, CallbackList, FitInfo
from trainer.config import Config, save_config
from trainer.data.cache import CACHES
from trainer.data.dataset import Samples, find_samples
from trainer.data.loader import loader_settings
from trainer.data.scan import (
    SKIPPED_FILE,
    BadImage,
    apply_policy,
    find_bad_images,
    fingerprint,
    write_bad_images,
)
from trainer.data.splits import Splits, load_or_create_splits, split_dir, split_path
from trainer.data.transforms import Pipeline, Resize
from trainer.engine import Normalize
from trainer.errors import DeviceOutOfMemoryError, one_line
from trainer.folds import FoldRunner, refit_epochs
from trainer.model.backbone import DataSpec, check_input_size, create_probe, data_spec
from trainer.runtime import resolve_execution, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """Everything the folds share: data, splits, pipelines, cache and execution mode."""

    info: FitInfo
    runner: FoldRunner


def fit(config: Config, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run the cross-validation (and the refit when ``train.refit``); return the summary."""
    return _run(prepare(config), callbacks, _train_all)


def refit_only(config: Config, epochs: int, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Only the workflow's last step: train on all non-test data for ``epochs`` and score the
    holdout (the split file is the one the cross-validation used)."""

    def train(prepared: Prepared, events: Callback) -> dict[str, Any]:
        summary = {
            "run_dir": str(prepared.info.run_dir),
            "refit": prepared.runner.run_refit(epochs, events),
        }
        (prepared.info.run_dir / "summary.json").write_text(
            json.dumps(summary, indent=1, default=str)
        )
        return summary

    return _run(prepare(config), callbacks, train)


def _run(
    prepared: Prepared,
    callbacks: Sequence[Callback],
    train: Callable[[Prepared, Callback], dict[str, Any]],
) -> dict[str, Any]:
    events = CallbackList(callbacks)
    try:
        events.on_fit_start(prepared.info)
        summary = train(prepared, events)
        events.on_fit_end(summary)
    except torch.OutOfMemoryError as error:
        explained = _out_of_memory(prepared.info, error)
        events.on_fit_error(explained)
        raise explained from error
    except BaseException as error:
        events.on_fit_error(error)
        raise
    return summary


def _out_of_memory(info: FitInfo, error: torch.OutOfMemoryError) -> DeviceOutOfMemoryError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the memory back before the next trial
    config = info.config
    detail = one_line(str(error))
    return DeviceOutOfMemoryError(
        f"out of memory on {info.execution.describe()} with train.batch_size="
        f"{config.train.batch_size} at {config.train.image_size} px ({detail}); lower "
        "train.batch_size or train.image_size, or use runtime.precision=bf16"
    )


def planned_steps(config: Config, splits: Splits) -> int:
    """Training steps of the cross-validation (what a mode's first-step cost is weighed by)."""
    per_epoch = -(-len(splits.fold(0)[0]) // config.train.batch_size)
    return per_epoch * config.train.epochs * splits.n_folds


def prepare(config: Config) -> Prepared:
    """Find the images, fix the splits, pick the execution mode and make the run folder."""
    probe = create_probe(config.model.backbone)  # the backbone is checked here, once
    check_input_size(probe, config.train.image_size, config.model.backbone)  # before the scan
    seed_everything(config.seed, config.runtime.deterministic, config.runtime.cudnn_benchmark)
    samples, digest, bad, splits = _load_data(config)
    execution = resolve_execution(
        config.runtime,
        probe,
        config.train.image_size,
        config.train.batch_size,
        key=f"{config.model.backbone}{'-frozen' if config.model.freeze_backbone else ''}",
        planned_steps=planned_steps(config, splits),
    )
    run_dir = _new_run_dir(config)
    save_config(config, run_dir / "config.yaml")
    if bad:
        write_bad_images(bad, run_dir / SKIPPED_FILE)
    info = FitInfo(
        config=config,
        samples=samples,
        splits=splits,
        data_digest=digest,
        execution=execution,
        run_dir=run_dir,
        n_folds=splits.n_folds,
        skipped=tuple(bad),
    )
    runner = _runner(info, data_spec(probe))
    _log_start(info)
    return Prepared(info=info, runner=runner)


def _runner(info: FitInfo, spec: DataSpec) -> FoldRunner:
    """The folds' shared parts; the device is the one the execution mode was settled on."""
    config = info.config
    resize = Resize(config.train.image_size)
    return FoldRunner(
        info=info,
        cache=CACHES.get(info.data_digest, info.samples.paths, resize, config.data.cache_mb),
        train_pipeline=Pipeline(config.train.image_size, config.augment),
        eval_pipeline=Pipeline(config.train.image_size, None),
        normalize=Normalize(spec.mean, spec.std),
        loading=loader_settings(config.data.num_workers, info.execution.device),
    )


def _load_data(config: Config) -> tuple[Samples, str, list[BadImage], Splits]:
    """The usable images, the data digest, the unusable images and the fixed splits."""
    samples = find_samples(config.data.root)
    digest = fingerprint(samples)
    bad = find_bad_images(samples, split_dir(config) / f"{digest[:16]}-bad-images.csv")
    samples = apply_policy(samples, bad, config.data.on_bad_image)
    data = config.data
    splits = load_or_create_splits(
        samples, split_path(config, digest), data.test_size, data.folds, data.val_size, config.seed
    )
    return samples, digest, bad, splits


def _train_all(prepared: Prepared, events: Callback) -> dict[str, Any]:
    info, runner = prepared.info, prepared.runner
    folds = [runner.run_fold(k, events) for k in range(info.n_folds)]
    best = np.array([fold["best/val_acc"] for fold in folds])
    epochs = np.array([fold["best/epoch"] for fold in folds])
    summary: dict[str, Any] = {
        "run_dir": str(info.run_dir),
        "cv/val_acc_mean": float(best.mean()),
        "cv/val_acc_std": float(best.std()),
        "cv/best_epoch_mean": float(epochs.mean()),
        "folds": folds,
    }
    log.info(
        "cross-validation: val acc %.4f ± %.4f over %d fold(s)",
        summary["cv/val_acc_mean"],
        summary["cv/val_acc_std"],
        len(folds),
    )
    if info.config.train.refit:
        summary["refit"] = runner.run_refit(refit_epochs(info.config, folds), events)
    (info.run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _new_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = config.output.dir / config.experiment / f"{stamp}-{config.model.backbone}"
    run_dir, suffix = base, 1
    while run_dir.exists():
        suffix += 1
        run_dir = base.with_name(f"{base.name}-{suffix}")
    run_dir.mkdir(parents=True)
    return run_dir


def _log_start(info: FitInfo) -> None:
    samples, splits = info.samples, info.splits
    log.info(
        "%d images, %d classes; holdout %d, %d fold(s); split file %s",
        len(samples),
        len(samples.class_names),
        len(splits.test),
        info.n_folds,
        splits.path,
    )
    log.info(
        "%s on %s; torch threads %d; run folder %s",
        info.config.model.backbone,
        info.execution.describe(),
        torch.get_num_threads(),
        info.run_dir,
    )
    _warn_about_data(info.config, info.data_digest)


_WARNED: set[str] = set()  # data digests already warned about in this process
_DATA_WARNINGS = {"on": True}  # off in processes that leave the data warning to another


def silence_data_warnings() -> None:
    """Leave the warning about the data to another process: a study's extra workers fit the
    same data as the ``studies run`` process, which says it once."""
    _DATA_WARNINGS["on"] = False


def _warn_about_data(config: Config, digest: str) -> None:
    """Once per dataset and process (a study's trials share it): what ``trainer explore``
    found that skews the scores (holdout leakage, label conflicts). Never fails the fit."""
    from trainer.explore import warning_for

    if digest in _WARNED or not _DATA_WARNINGS["on"]:
        return
    _WARNED.add(digest)
    try:
        line = warning_for(config, digest)
    except (OSError, ValueError, KeyError) as exc:  # unreadable findings: explore again
        log.debug("explore findings unreadable: %s", exc)
        return
    if line:
        log.warning(line)
