"""Command latency: `trainer --help`, `studies --help` and `trainer predict` from the registry.

Each command runs as its own process, as a user types it, several times in turns; the figure
is the median wall time. `trainer predict --model models:/latency@champion` classifies 183
digit images with a demo model registered in a fresh embedded store; its reference is a bare
`python -c "import torch, timm"` on the same machine (targets: predict <= 1.5x the reference,
each --help <= 1 s). The same prediction from `runs:/ID/model` goes through MLflow's client
(as a model on a tracking server does), for comparison. Wall time depends on what else runs
on the cores, so the CPU seconds of each command and the load average are recorded too.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import digits_store, save

DEMO = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "demo.yaml"
IMAGES = 183
MODEL = "latency"


def register_demo_model(root: Path) -> str:
    """A one-epoch demo fit with its model logged, registered as ``latency@champion``; returns
    the id of the run that logged it."""
    from mlflow import MlflowClient

    from trainer.config import load_config
    from trainer.fit import fit
    from trainer.tracking import MODEL_URI_TAG, MlflowTracker, tracking_uri

    overrides = [
        f"data.root={root / 'digits'}",
        f"output.dir={root / 'out'}",
        "runtime.progress=false",
        "train.epochs=1",
        "data.folds=2",
        "train.refit=false",
    ]
    config = load_config(DEMO, overrides)
    tracker = MlflowTracker(config.tracking, config.experiment)
    fit(config, [tracker])
    client = MlflowClient(tracking_uri())
    source = client.get_run(tracker.parent_id).data.tags[MODEL_URI_TAG]
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, source, run_id=tracker.parent_id)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    return str(tracker.parent_id)


def sample_images(root: Path) -> Path:
    """The first ``IMAGES`` digit files, copied into one folder."""
    folder = root / "new-images"
    folder.mkdir(exist_ok=True)
    for path in sorted((root / "digits").rglob("*.png"))[:IMAGES]:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    return folder


def seconds(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of the command (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, capture_output=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def commands(root: Path, images: Path, run_id: str) -> dict[str, list[str]]:
    """What is timed, by name."""
    bin_dir = Path(sys.executable).parent
    predict = [str(bin_dir / "trainer"), "predict", str(images), "--out", str(root / "out.csv")]
    return {
        "import torch, timm": [sys.executable, "-c", "import torch, timm"],
        "trainer --help": [str(bin_dir / "trainer"), "--help"],
        "studies --help": [str(bin_dir / "studies"), "--help"],
        "trainer predict": [*predict, "--model", f"models:/{MODEL}@champion"],
        "trainer predict (runs:/, through MLflow)": [*predict, "--model", f"runs:/{run_id}/model"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with digits_store() as root:
        run_id = register_demo_model(root)
        load_before = os.getloadavg()[0]
        timed = time_commands(commands(root, sample_images(root), run_id), root, args.repeats)
    save("command_latency", summary(timed, args.repeats, [load_before, os.getloadavg()[0]]))


def time_commands(
    named: dict[str, list[str]], cwd: Path, repeats: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each command, run ``repeats`` times in turns (a burst of load
    hits every command alike)."""
    timed: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for name, command in named.items():
            timed.setdefault(name, []).append(seconds(command, cwd))
            wall, cpu = timed[name][-1]
            print(f"{name}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    return timed


def summary(
    timed: dict[str, list[tuple[float, float]]], repeats: int, load: list[float]
) -> dict[str, object]:
    """Medians, spreads and the ratio to the target, as saved."""
    walls = {name: [wall for wall, _ in runs] for name, runs in timed.items()}
    medians = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in timed.items()}
    reference, predict = "import torch, timm", "trainer predict"
    result = {
        "mode": f"{repeats} turns, {IMAGES} images",
        "seconds": medians,
        "spread": {name: [min(values), max(values)] for name, values in walls.items()},
        "cpu_seconds": cpu,
        "predict_over_import": medians[predict] / medians[reference],
        "predict_over_import_cpu": cpu[predict] / cpu[reference],
        # other processes sharing the cores (1-minute load average; 2 = both cores busy)
        "load_average": [round(value, 1) for value in load],
        "targets": {"predict_over_import": 1.5, "help_seconds": 1.0},
    }
    print(f"predict ÷ import torch, timm: {result['predict_over_import']:.2f} (target <= 1.5)")
    return result


if __name__ == "__main__":
    main()
