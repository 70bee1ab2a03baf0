"""Tracking overhead: the same fit with full MLflow tracking and with tracking off.

Two cases, each run in one process, alternating tracked and untracked fits after a warm-up, so
imports, the decoded-image cache and the store's creation are paid before timing:

- ``demo``: the demo config (3 folds x 3 epochs + refit with model logging, test_resnet at
  32 px on the 1797 digits); target <= 5 %;
- ``realistic``: resnet18 (random weights) at 128 px on 1,000 JPEG photos (500 x 375, 100 per
  class), 3 folds x 2 epochs, tracking defaults (best checkpoints, figures, galleries, the best
  fold's model logged); target <= 2 %.

Two figures per case:

- wall time: median tracked / median untracked - 1, and the median over repeats of each
  back-to-back pair's tracked / untracked - 1 (which cancels the machine's slow drifts). On a
  shared 2-core machine the spread of single fits can be larger than the effect, so both are
  reported with their spreads;
- time inside the tracker: seconds the training thread spent in the MLflow callback's hooks
  (uploads and figures run on the tracker's background writer; ``on_fit_end`` includes waiting
  for it to finish) / the rest of the same tracked fit. Both are measured in one run, so
  machine noise largely cancels; the hooks are broken down per hook.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS, digits_store, save, write_photos

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


WRITER = "writer_thread_cpu"  # not a hook: CPU seconds of the tracker's background writer


class WriterCpu:
    """Adds up the CPU seconds the tracker's background writer spends on its tasks."""

    def __init__(self, writer: Any) -> None:
        self.seconds = 0.0
        submit = writer.submit

        def timed_submit(what: str, task: Any) -> None:
            def timed() -> None:
                start = time.thread_time()
                try:
                    task()
                finally:
                    self.seconds += time.thread_time() - start

            submit(what, timed)

        writer.submit = timed_submit


def alternate(
    config: Any, repeats: int, warm_up: Any
) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """Wall seconds of tracked and untracked fits, alternating (on, off, off, on, ...) after
    warm-up fits, and the seconds each tracked fit spent in every hook."""
    from trainer.fit import fit
    from trainer.tracking import MlflowTracker

    hooks: list[dict[str, float]] = []

    def run(tracked: bool, settings: Any = config) -> float:
        tracker = MlflowTracker(settings.tracking, settings.experiment)
        timed, background = TimedHooks(tracker), WriterCpu(tracker.writer)
        start = time.perf_counter()
        fit(settings, [timed] if tracked else [])  # type: ignore[list-item]
        if tracked:
            hooks.append({**timed.seconds, WRITER: background.seconds})
        return time.perf_counter() - start

    run(True, warm_up), run(False, warm_up)  # imports, cache, store, precision choice
    hooks.clear()
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    for repeat in range(repeats):
        for tracked in (True, False) if repeat % 2 == 0 else (False, True):
            seconds["on" if tracked else "off"].append(run(tracked))
    return seconds, hooks


CASES: dict[str, dict[str, Any]] = {
    "demo": {
        "data": "the 1797 digits as 32 px PNGs",
        "set": ["train.epochs=3"],
        "warm_up": [],
        "target": 0.05,
    },
    "realistic": {
        "data": "1,000 digits as 500x375 colour JPEGs (100 per class)",
        "set": [
            "model.backbone=resnet18",
            "train.image_size=128",
            "train.epochs=2",
            "train.refit=false",
            "runtime.precision=auto",
            "runtime.channels_last=auto",
        ],
        "warm_up": ["train.epochs=1"],
        "target": 0.02,
    },
}


def measure(case: str, repeats: int) -> dict[str, Any]:
    """One case's figures, from a scratch store and data folder."""
    from trainer.config import load_config

    spec = CASES[case]
    with digits_store() as root:
        data = root / "digits"
        if case == "realistic":
            data = root / "photos"
            write_photos(data, per_class=100)
        common = [
            f"data.root={data}",
            f"output.dir={root / 'out'}",
            "runtime.progress=false",
            *spec["set"],
        ]
        config = load_config(DEMO, common)
        warm_up = load_config(DEMO, [*common, *spec["warm_up"]])
        seconds, hooks = alternate(config, repeats, warm_up)
    result = summarise(seconds, hooks)
    print(
        f"{case}: tracking on {result['on']['median']:.2f} s, off {result['off']['median']:.2f} "
        f"s: wall-time overhead {result['overhead']:+.1%}; inside the tracker "
        f"{result['hooks']['median']:.2f} s = {result['hook_overhead']:+.1%} of the rest "
        f"(target <= {spec['target']:.0%})"
    )
    mode = " ".join(spec["set"])
    return {
        "case": case,
        "data": spec["data"],
        "settings": mode,
        "repeats": repeats,
        **result,
        "target_overhead": spec["target"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=12, help="tracked fits per case (demo)")
    parser.add_argument("--realistic-repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = [
        measure(case, args.realistic_repeats if case == "realistic" else args.repeats)
        for case in args.cases
    ]
    save("tracking_overhead", {"cases": [*cases, *earlier_cases(args.cases)]})


def earlier_cases(measured: list[str]) -> list[dict[str, Any]]:
    """The cases of the last results file that this run did not measure, each with its date."""
    path = RESULTS / "tracking_overhead.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    date = earlier.get("machine", {}).get("date")
    return [
        {"measured": date, **case}
        for case in earlier.get("cases", [])
        if case["case"] not in measured
    ]


def summarise(seconds: dict[str, list[float]], hooks: list[dict[str, float]]) -> dict[str, Any]:
    """Medians and spreads of both figures, and the median seconds per hook."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    stats = {k: spread(v) for k, v in seconds.items()}
    # the r-th tracked and untracked fits ran back to back: their ratio cancels slow drifts
    paired = [on / off - 1 for on, off in zip(seconds["on"], seconds["off"], strict=True)]
    in_hooks = [sum(v for k, v in h.items() if k != WRITER) for h in hooks]
    shares = [
        inside / (total - inside) for inside, total in zip(in_hooks, seconds["on"], strict=True)
    ]
    per_hook = {name: statistics.median(h.get(name, 0.0) for h in hooks) for name in HOOKS}
    per_hook[WRITER] = statistics.median(h.get(WRITER, 0.0) for h in hooks)
    return {
        **stats,
        "overhead": stats["on"]["median"] / stats["off"]["median"] - 1,
        "paired_overhead": spread(paired),
        "fits": seconds,  # wall seconds in the order they ran, per kind
        "hooks": spread(in_hooks),
        "hook_seconds": per_hook,
        "hook_overhead": statistics.median(shares),
        "hook_overhead_spread": [min(shares), max(shares)],
    }


if __name__ == "__main__":
    main()
