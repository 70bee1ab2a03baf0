"""Tracking overhead: the same fit with full MLflow tracking and with tracking off.

The demo config (3 folds x 3 epochs + refit, test_resnet at 32 px on the 1797 digits) runs
in one process, alternating on and off after a warm-up of each, so imports, the image cache and
the store's creation are paid before timing. Figure: median wall time on / median off - 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import save

DEMO = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from trainer.config import load_config
    from trainer.fit import fit
    from trainer.sample_data import write_digits
    from trainer.tracking import MlflowTracker

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        write_digits(root / "digits")
        overrides = [
            f"data.root={root / 'digits'}",
            f"output.dir={root / 'out'}",
            "runtime.progress=false",
            f"train.epochs={args.epochs}",
        ]
        config = load_config(DEMO, overrides)

        def run(tracked: bool) -> float:
            callbacks = [MlflowTracker(config.tracking, config.experiment)] if tracked else []
            start = time.perf_counter()
            fit(config, callbacks)
            return time.perf_counter() - start

        run(True), run(False)  # warm-up: imports, cache, store, precision choice
        seconds: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.repeats):
            seconds["on"].append(run(True))
            seconds["off"].append(run(False))
    result = summarise(seconds)
    print(
        f"tracking on {result['on']['median']:.2f} s, off {result['off']['median']:.2f} s: "
        f"overhead {result['overhead']:+.1%} (target <= 2 %)"
    )
    save(
        "tracking_overhead",
        {
            "mode": f"{args.repeats} repeats, {args.epochs} epochs",
            **result,
            "target_overhead": 0.02,
        },
    )


def summarise(seconds: dict[str, list[float]]) -> dict[str, Any]:
    import statistics

    stats = {
        k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for k, v in seconds.items()
    }
    return {**stats, "overhead": stats["on"]["median"] / stats["off"]["median"] - 1}


if __name__ == "__main__":
    main()
