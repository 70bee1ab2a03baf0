"""Shared benchmark plumbing: machine facts, repeated timing, JSON results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainer.provenance import package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

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
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
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


def save(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"benchmark": name, "machine": machine(), **result}, indent=1, default=str)
    )
    return path
