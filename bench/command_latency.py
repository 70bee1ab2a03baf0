"""Command latency: `trainer --help`, `studies --help` and `trainer predict` from the registry.

Each command runs as its own process, as a user types it, several times in turns; the figure
is the median wall time. `trainer predict --model models:/latency@champion` classifies 183
digit images with a demo model registered in a fresh embedded store; its reference is a bare
`python -c "import torch, timm"` on the same machine (targets: predict <= 1.5x the reference,
each --help <= 1 s).
"""

from __future__ import annotations

import argparse
import logging
import os
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


def register_demo_model(root: Path) -> None:
    """A one-epoch demo fit with its model logged, registered as ``latency@champion``."""
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


def sample_images(root: Path) -> Path:
    """The first ``IMAGES`` digit files, copied into one folder."""
    folder = root / "new-images"
    folder.mkdir(exist_ok=True)
    for path in sorted((root / "digits").rglob("*.png"))[:IMAGES]:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    return folder


def wall_seconds(command: list[str], cwd: Path) -> float:
    """Wall time of one run of the command (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, capture_output=True, env=os.environ.copy())
    return time.perf_counter() - start


def commands(root: Path, images: Path) -> dict[str, list[str]]:
    """What is timed, by name."""
    bin_dir = Path(sys.executable).parent
    predict = [str(bin_dir / "trainer"), "predict", "--model", f"models:/{MODEL}@champion"]
    return {
        "import torch, timm": [sys.executable, "-c", "import torch, timm"],
        "trainer --help": [str(bin_dir / "trainer"), "--help"],
        "studies --help": [str(bin_dir / "studies"), "--help"],
        "trainer predict": [*predict, str(images), "--out", str(root / "predictions.csv")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with digits_store() as root:
        register_demo_model(root)
        timed: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # in turns: a burst of load hits every command alike
            for name, command in commands(root, sample_images(root)).items():
                timed.setdefault(name, []).append(wall_seconds(command, root))
    medians = {name: statistics.median(seconds) for name, seconds in timed.items()}
    result = {
        "mode": f"{args.repeats} turns, {IMAGES} images",
        "seconds": medians,
        "spread": {name: [min(s), max(s)] for name, s in timed.items()},
        "predict_over_import": medians["trainer predict"] / medians["import torch, timm"],
        "targets": {"predict_over_import": 1.5, "help_seconds": 1.0},
    }
    for name, seconds in medians.items():
        print(f"{name}: {seconds:.2f} s")
    print(f"predict ÷ import torch, timm: {result['predict_over_import']:.2f} (target <= 1.5)")
    save("command_latency", result)


if __name__ == "__main__":
    main()
