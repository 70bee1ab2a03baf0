"""Tracking overhead: the same fit with full MLflow tracking and with tracking off.

The demo config (3 folds x 3 epochs + refit, test_resnet at 32 px on the 1797 digits) runs
in one process, alternating on and off after a warm-up of each, so imports, the image cache and
the store's creation are paid before timing. Two figures:

- wall time: median on / median off - 1 (target <= 2 %). On a shared 2-core machine the
  spread of single fits is larger than the effect, so this one is reported with its spread;
- time inside the tracker: seconds spent in the MLflow callback's hooks / the rest of the same
  tracked fit. Both are measured in one run, so machine noise largely cancels; the hooks are
  broken down so the fixed per-fit cost and the per-epoch cost can be told apart.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import digits_store, save

DEMO = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "demo.yaml"
HOOKS = (
    "on_fit_start",
    "on_fold_start",
    "on_epoch_end",
    "on_checkpoint",
    "on_fold_end",
    "on_fit_end",
    "on_fit_error",
)


class TimedHooks:
    """Wraps a callback and adds up the wall time spent in each of its hooks."""

    def __init__(self, inner: Any) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        for hook in HOOKS:
            setattr(self, hook, self._timed(hook, getattr(inner, hook)))

    def _timed(self, hook: str, method: Any) -> Any:
        def call(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds[hook] += time.perf_counter() - start

        return call


def alternate(config: Any, repeats: int) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """Wall seconds of tracked and untracked fits, alternating after a warm-up of each, and the
    seconds each tracked fit spent in every hook."""
    from trainer.fit import fit
    from trainer.tracking import MlflowTracker

    hooks: list[dict[str, float]] = []

    def run(tracked: bool) -> float:
        timed = TimedHooks(MlflowTracker(config.tracking, config.experiment))
        start = time.perf_counter()
        fit(config, [timed] if tracked else [])  # type: ignore[list-item]
        if tracked:
            hooks.append(dict(timed.seconds))
        return time.perf_counter() - start

    run(True), run(False)  # warm-up: imports, cache, store, precision choice
    hooks.clear()
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(repeats):
        seconds["on"].append(run(True))
        seconds["off"].append(run(False))
    return seconds, hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from trainer.config import load_config

    with digits_store() as root:
        overrides = [
            f"data.root={root / 'digits'}",
            f"output.dir={root / 'out'}",
            "runtime.progress=false",
            f"train.epochs={args.epochs}",
        ]
        seconds, hooks = alternate(load_config(DEMO, overrides), args.repeats)
    result = summarise(seconds, hooks)
    print(
        f"tracking on {result['on']['median']:.2f} s, off {result['off']['median']:.2f} s: "
        f"wall-time overhead {result['overhead']:+.1%}; inside the tracker "
        f"{result['hooks']['median']:.2f} s = {result['hook_overhead']:+.1%} of the rest "
        f"(target <= 2 %)"
    )
    save(
        "tracking_overhead",
        {
            "mode": f"{args.repeats} repeats, {args.epochs} epochs",
            **result,
            "target_overhead": 0.02,
        },
    )


def summarise(seconds: dict[str, list[float]], hooks: list[dict[str, float]]) -> dict[str, Any]:
    """Medians and spreads of both figures, and the median seconds per hook."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    stats = {k: spread(v) for k, v in seconds.items()}
    in_hooks = [sum(h.values()) for h in hooks]
    shares = [
        inside / (total - inside) for inside, total in zip(in_hooks, seconds["on"], strict=True)
    ]
    per_hook = {name: statistics.median(h.get(name, 0.0) for h in hooks) for name in HOOKS}
    return {
        **stats,
        "overhead": stats["on"]["median"] / stats["off"]["median"] - 1,
        "hooks": spread(in_hooks),
        "hook_seconds": per_hook,
        "hook_overhead": statistics.median(shares),
        "hook_overhead_spread": [min(shares), max(shares)],
    }


if __name__ == "__main__":
    main()
