"""Cost of ``trainer explore`` over 25,000 JPEGs of 500x375 (target: <= 90 s on 2 cores).

The images are generated once under ``bench/work/explore-jpegs/`` (10 class folders of smooth
random pictures, like the input-pipeline benchmark's), with planted copies: every 1000th image
is an exact copy of an image of another class and every 1000th (offset 500) a re-encoded copy
of its neighbour in the same class. The command is timed end to end as a user runs it (a new
process: imports, data digest, decode check, hashes, splits, tables, pictures, MLflow run),
first with no findings kept (cold), then again on the same data (findings reused). The MLflow
store exists beforehand (creating a fresh SQLite store is a one-time ~3 s). Wall time depends
on what else runs on the cores, so the load average and the CPU seconds are recorded too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import save

WORK = Path(__file__).resolve().parent / "work" / "explore-jpegs"
COUNT, CLASSES = 25_000, 10
TARGET_SECONDS = 90.0


def make_image(index: int) -> None:
    """Write image ``index`` (deterministic, whatever else exists), planting copies."""
    path = WORK / f"c{index % CLASSES}" / f"{index:05d}.jpg"
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    seed, quality = index, 95
    if index % 1000 == 999:  # the same bytes as image index-1, filed under another class
        seed = index - 1
    elif index % 1000 == 510:  # image index-10 (same class) re-encoded at another quality
        seed, quality = index - CLASSES, 80
    small = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    image = cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])


def jpeg_folder(count: int) -> Path:
    """``count`` 500x375 JPEGs in class folders (made once, on every core)."""
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        pool.map(make_image, range(count), chunksize=256)
    return WORK


def run_explore(data: Path, scratch: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (the process and its workers, all cores) of one
    ``trainer explore DATA`` process writing under ``scratch``."""
    command = [
        str(Path(sys.executable).with_name("trainer")),
        "explore",
        str(data),
        "--set",
        f"output.dir={scratch / 'outputs'}",
        "--set",
        "experiment=bench-explore",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def prepare_store(scratch: Path) -> None:
    """A tracking store that exists before the timed runs (as a user's does)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    from mlflow import MlflowClient

    from trainer.tracking.store import ensure_experiment, tracking_uri

    ensure_experiment(MlflowClient(tracking_uri()), "bench-explore")


def measure(count: int) -> dict[str, Any]:
    """Cold and cached seconds over ``count`` images, and what explore found."""
    started = time.perf_counter()
    data = jpeg_folder(count)
    generated = time.perf_counter() - started
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        prepare_store(scratch)
        cold = run_explore(data, scratch)
        cached = run_explore(data, scratch)
        summary = json.loads(
            (scratch / "outputs" / "bench-explore" / "explore" / "summary.json").read_text()
        )
    return {
        "images": count,
        "classes": CLASSES,
        "image_size": "500x375",
        "generate_seconds": round(generated, 1),
        "cold_seconds": round(cold[0], 1),
        "cached_seconds": round(cached[0], 1),
        # CPU time over the cores: the wall time on otherwise idle cores is at least this / cores
        "cold_cpu_seconds": round(cold[1], 1),
        "cached_cpu_seconds": round(cached[1], 1),
        "target_seconds": TARGET_SECONDS,
        # other processes sharing the cores (1-minute load average; 2 = both cores busy)
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "found": {k: v for k, v in summary.items() if "duplicates" in k or k == "unreadable"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COUNT, help="images (default 25,000)")
    args = parser.parse_args()
    result = measure(args.count)
    print(json.dumps(result, indent=1))
    if args.count == COUNT:
        print(f"wrote {save('explore', {'mode': 'cli', **result})}")


if __name__ == "__main__":
    main()
