"""``trainer explore``: look at a dataset before training on it, and log what was seen.

The data is found, fingerprinted and split exactly as ``trainer fit`` does (the same
functions, the same split file), every image is probed once per data digest (see
``trainer.explore.probe``), and the tables and pictures are written to
``<output.dir>/<experiment>/explore/`` and logged as one MLflow run named ``explore``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.config import Config
from trainer.data.dataset import Samples, find_samples
from trainer.data.scan import fingerprint
from trainer.data.splits import load_or_create_splits, split_dir, split_path
from trainer.errors import UserError
from trainer.explore import artifacts
from trainer.explore.duplicates import NEAR_DISTANCE, describe_pairs, find_pairs
from trainer.explore.findings import (
    assign_splits,
    findings_path,
    load_findings,
    save_findings,
)
from trainer.explore.probe import probe_all
from trainer.explore.stats import class_table, image_table, summarize, with_aspect

log = logging.getLogger(__name__)

RUN_NAME = "explore"


@dataclass
class Exploration:
    """What one exploration found, and where its files went."""

    root: Path
    digest: str
    images: pd.DataFrame  # one row per image: path, label, split, file facts, hashes, error
    classes: pd.DataFrame  # one row per class: images, unreadable, holdout, folds
    pairs: pd.DataFrame  # duplicate pairs, both paths, cross_class and leakage flags
    summary: dict[str, float]
    out_dir: Path
    split_file: Path | None
    split_note: str = ""  # why there is no split file
    run_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def explore(
    config: Config, near_distance: int = NEAR_DISTANCE, workers: int | None = None
) -> Exploration:
    """Explore ``config``'s data; log it to MLflow unless tracking is off."""
    started = time.perf_counter()
    samples = find_samples(config.data.root)
    digest = fingerprint(samples)
    images, pairs = probe_once(samples, digest, split_dir(config), near_distance, workers)
    split_file, note = _split_file(config, samples, images, digest)
    images = with_aspect(assign_splits(images, split_file))
    table = describe_pairs(pairs, images)
    classes = class_table(images)
    found = Exploration(
        root=samples.root,
        digest=digest,
        images=images,
        classes=classes,
        pairs=table,
        summary=summarize(images, classes, table),
        out_dir=config.output.dir / config.experiment / "explore",
        split_file=split_file,
        split_note=note,
    )
    _write(found, samples.paths, config.seed)
    if config.tracking.enabled:
        found.run_id = _log(found, config, near_distance)
    found.seconds["total"] = time.perf_counter() - started
    return found


def probe_once(
    samples: Samples, digest: str, directory: Path, near: int, workers: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The image table and duplicate pairs: from the findings file of ``digest`` when there
    is one, else probed (and the findings file written)."""
    path = findings_path(directory, digest)
    found = load_findings(path, digest)
    if found is not None and found[2] == near:
        log.info("reusing the findings of this data (%s)", path)
        return found[0], found[1]
    if found is not None:
        images = found[0]
    else:
        from trainer.runtime import available_cores

        count = workers or available_cores()
        log.info("probing %d images on %d process(es)", len(samples), count)
        images = image_table(samples, probe_all(samples.paths, count))
    pairs = find_pairs(images, near)
    save_findings(path, digest, images, pairs, near)
    return images, pairs


def _split_file(
    config: Config, samples: Samples, images: pd.DataFrame, digest: str
) -> tuple[Path | None, str]:
    """The split file training uses (drawn now if missing), over the readable images as with
    ``data.on_bad_image=skip``; or None and why (e.g. a class too small to split)."""
    keep = np.flatnonzero(images["error"].to_numpy() == "")
    usable = replace(
        samples, paths=tuple(samples.paths[i] for i in keep), labels=samples.labels[keep]
    )
    data = config.data
    path = split_path(config, digest)
    try:
        load_or_create_splits(usable, path, data.test_size, data.folds, data.val_size, config.seed)
    except UserError as error:
        log.warning("no holdout or folds to show: %s", error)
        return None, str(error)
    return path, ""


def _write(found: Exploration, paths: tuple[Path, ...], seed: int) -> None:
    out = found.out_dir
    if out.exists():
        shutil.rmtree(out)
    artifacts.write_tables(found.images, found.classes, found.pairs, out)
    artifacts.write_figures(found.images, found.classes, out)
    artifacts.write_thumbnails(found.images, paths, out, seed)
    artifacts.write_galleries(found.pairs, paths, out)
    facts = {
        "data": str(found.root),
        "digest": found.digest,
        "split_file": str(found.split_file or ""),
        "split_note": found.split_note,
        **found.summary,
    }
    (out / "summary.json").write_text(json.dumps(facts, indent=1))


def note(found: Exploration) -> str:
    """A few lines of markdown on what was found, for the run's description."""
    summary = found.summary
    exact = int((found.pairs["kind"] == "exact").sum())
    return (
        f"Explore of `{found.root}`: {int(summary['images'])} images, "
        f"{int(summary['classes'])} classes (largest / smallest = "
        f"{summary['imbalance_ratio']:.2f}), {int(summary['unreadable'])} unreadable.\n\n"
        f"Duplicate pairs: {exact} exact, {len(found.pairs) - exact} near; "
        f"holdout leakage {int(summary['leakage_pairs'])}, "
        f"label conflicts {int(summary['cross_class_pairs'])}.\n\n"
        "Pictures: `thumbnails/`, `duplicates/`, `class_counts.png`; "
        "tables: `classes.csv`, `duplicates.csv`, `unreadable.csv`, `images.csv`."
    )


def _log(found: Exploration, config: Config, near: int) -> str:
    from trainer.tracking.explore import log_exploration

    data = config.data
    params = {
        "data.root": str(data.root),
        "data.test_size": data.test_size,
        "data.folds": data.folds,
        "data.val_size": data.val_size,
        "seed": config.seed,
        "near_distance": near,
    }
    tags = {
        "data_digest": found.digest,
        "split_file": str(found.split_file or ""),
        "mlflow.note.content": note(found),  # the run page's description
    }
    return log_exploration(
        config.tracking.uri,
        config.experiment,
        RUN_NAME,
        found.out_dir,
        metrics=found.summary,
        params=params,
        tags=tags,
        dataset=found.images[["path", "label", "split", "width", "height", "format", "mode"]],
        digest=found.digest,
        source=found.root,
    )
