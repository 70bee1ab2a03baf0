"""Parallel trials on a CPU: one process per core, one thread each, against one process using
every core, as ``studies run --workers auto`` chooses on a machine without GPU.

Each process times the trainer's training step (``trainer.runtime.time_training_step``: random
input, fp32, channels-last) for about ``SECONDS`` after warm-up and reports the images per
second of its median step; the N one-thread processes run at the same time and their rates add
up. The two layouts take turns for ``--repeats`` rounds and the median is kept.
Figure, per backbone and size: images per second of the N processes ÷ the one process. Batches
are random tensors, so the per-sample work a trial does in its own process (decoding,
augmenting) is left out; it runs on one core in either layout.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
from typing import Any

from bench.common import save

CASES = [("test_resnet", 16, 64), ("test_efficientnet", 32, 64), ("resnet18", 128, 32)]
SECONDS = 6.0  # training time each process aims for, per round


def child(backbone: str, size: int, batch: int) -> None:
    """In a child process: warm up, say ready, wait for the go, train, print images/s."""
    import torch

    from trainer.model.backbone import create_probe
    from trainer.runtime import Execution, time_training_step

    model = create_probe(backbone, num_classes=10)
    mode = Execution(torch.device("cpu"), "fp32", channels_last=True)
    paced = time_training_step(model, mode, size, batch)  # warms up, and sets the step count
    steps = max(3, round(SECONDS / paced.steady))
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts training together
    print(batch / time_training_step(model, mode, size, batch, steps).steady)


def run_processes(count: int, threads: int, case: tuple[str, int, int]) -> float:
    """Images per second of ``count`` processes of ``threads`` threads each, together."""
    backbone, size, batch = case
    command = [sys.executable, "-m", "bench.parallel_trials", "--child", backbone, str(size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    children = [
        subprocess.Popen(
            [*command, str(batch)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for c in children:
        assert c.stdout is not None and c.stdout.readline().strip() == "ready"
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    outputs = [c.communicate()[0] for c in children]
    if any(c.returncode for c in children):
        raise RuntimeError(f"a child failed: {outputs}")
    return sum(float(out.strip().splitlines()[-1]) for out in outputs)


def measure(case: tuple[str, int, int], cores: int, repeats: int) -> dict[str, Any]:
    """One process of ``cores`` threads and ``cores`` one-thread processes, taking turns."""
    one, parallel = [], []
    for _ in range(repeats):
        one.append(run_processes(1, cores, case))
        parallel.append(run_processes(cores, 1, case))
    alone, together = statistics.median(one), statistics.median(parallel)
    row: dict[str, Any] = {
        "backbone": case[0],
        "image_size": case[1],
        "batch": case[2],
        "one_process_images_per_second": alone,
        "parallel_images_per_second": together,
        "ratio": together / alone,
        "rounds": {"one_process": one, "parallel": parallel},
    }
    print(
        f"{case[0]} {case[1]}px: 1 process x {cores} threads "
        f"{row['one_process_images_per_second']:.0f} img/s, {cores} processes x 1 thread "
        f"{row['parallel_images_per_second']:.0f} img/s: {row['ratio']:.2f}x"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backbone, size, batch = args.child
        child(backbone, int(size), int(batch))
        return
    logging.basicConfig(level=logging.WARNING)
    from trainer.runtime import available_cores

    cores = available_cores()
    rows = [measure(case, cores, args.repeats) for case in CASES]
    save(
        "parallel_trials",
        {"cores": cores, "seconds_per_round": SECONDS, "repeats": args.repeats, "cases": rows},
    )


if __name__ == "__main__":
    main()
