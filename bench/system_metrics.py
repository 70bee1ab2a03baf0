"""System metrics cost: what one sample of MLflow's system-metrics monitor takes from training.

The monitor is a thread that, every ``tracking.system_metrics_seconds`` (10 s by default),
reads CPU, memory, disk, network (and GPU through NVML) with psutil, checks the run is still
RUNNING and writes the values to the store. One cycle's wall and CPU seconds are timed on a
real run in a fresh embedded store; divided by the interval they give the share of one core
the sampler takes while a fit trains beside it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import save


def cycle_seconds(monitor: Any, client: Any, run_id: str) -> tuple[float, float]:
    """Wall and CPU seconds of one monitor cycle: collect, check the run, aggregate, publish."""
    wall, cpu = time.perf_counter(), time.thread_time()
    monitor.collect_metrics()
    client.get_run(run_id)
    monitor.publish_metrics(monitor.aggregate_metrics())
    return time.perf_counter() - wall, time.thread_time() - cpu


def measure(cycles: int) -> dict[str, Any]:
    """Median cost of a sampling cycle on a fresh SQLite store, and its share at 10 s."""
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from trainer.tracking.store import ensure_experiment, quiet

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = MlflowClient(uri)
        run_id = client.create_run(ensure_experiment(client, "system-metrics")).info.run_id
        with quiet("mlflow.system_metrics"):
            monitor = SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=uri)
        timings = [cycle_seconds(monitor, client, run_id) for _ in range(cycles + 1)][1:]
        client.set_terminated(run_id)
        gpu = any("GPU" in type(m).__name__ for m in monitor.monitors)
    wall = statistics.median(t[0] for t in timings)
    cpu = statistics.median(t[1] for t in timings)
    return {
        "cycles": cycles,
        "gpu_monitor": gpu,
        "wall_seconds_per_sample": wall,
        "cpu_seconds_per_sample": cpu,
        "max_wall_seconds_per_sample": max(t[0] for t in timings),
        "interval_seconds": 10,
        "share_of_one_core": cpu / 10,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = measure(args.cycles)
    print(
        f"system metrics: {result['wall_seconds_per_sample'] * 1000:.1f} ms wall, "
        f"{result['cpu_seconds_per_sample'] * 1000:.1f} ms CPU per sample = "
        f"{result['share_of_one_core']:.3%} of one core at the default 10 s interval"
    )
    save("system_metrics", {"mode": f"{args.cycles} cycles", **result})


if __name__ == "__main__":
    main()
