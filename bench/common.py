"""Shared benchmark plumbing: machine facts, repeated timing, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainer.provenance import package_versions
from trainer.runtime import available_cores

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": available_cores(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "versions": package_versions(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def timed(action: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median and spread (min, max) of ``repeats`` wall-clock timings, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "repeats": repeats,
    }


@contextmanager
def digits_store() -> Iterator[Path]:
    """A scratch folder holding the digits in ``digits/``, with ``MLFLOW_TRACKING_URI`` set to
    a SQLite store inside it."""
    from trainer.data.sample_data import write_digits

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        write_digits(root / "digits")
        yield root


def save(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"benchmark": name, "machine": machine(), **result}, indent=1, default=str)
    )
    return path


def write_photos(root: Path, per_class: int | None = None) -> None:
    """The digits as 500 x 375 colour JPEGs (the decoding cost of ordinary photos); all of them,
    or the first ``per_class`` of each class."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_digits

    digits, written = load_digits(), dict.fromkeys(range(10), 0)
    for number, (image, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        if per_class is not None and written[int(digit)] == per_class:
            continue
        pixels = (image * (255.0 / 16.0)).astype(np.uint8)
        large = cv2.resize(pixels, (500, 375), interpolation=cv2.INTER_CUBIC)
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{number:04d}.jpg"), cv2.cvtColor(large, cv2.COLOR_GRAY2BGR))
        written[int(digit)] += 1
