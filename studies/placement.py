"""Where a study's worker processes run: one trial per GPU, or per core on a CPU machine.

``--workers auto`` starts one worker per visible GPU; on a machine without one, one worker per
core, at most ``CPU_WORKERS_MAX``. ``--workers W`` spreads W workers over the GPUs round-robin.
Each worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``), so its trials run there as
``cuda:0``; the CPU threads are split between the workers so that they do not oversubscribe the
cores. The ``studies run`` process itself is worker 0 (the first GPU, as its own ``cuda:0``): it
trains while the other workers import and start.

Why trials in parallel on a CPU: a training step's intra-op threads scale badly on small
models, and the batches are made in the trial's own process, so one trial leaves cores idle.
On 2 cores, two one-thread processes trained 1.55-1.81x the images per second of one two-thread
process on timm's tiny test models and 1.15x on resnet18 at 128 px (bench/parallel_trials.py).
"""

from __future__ import annotations

import os

from trainer.errors import UserError
from trainer.runtime import available_cores

# Parallel trials on a machine without GPU: each holds its own model, optimiser and batches, so
# memory grows with their number; four keep it at four fits' worth on a many-core server.
CPU_WORKERS_MAX = 4


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all CUDA devices."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip() and item.strip() != "-1"]
    import torch  # only here: `studies --help` and the report need no torch

    return [str(index) for index in range(torch.cuda.device_count())]


def worker_count(requested: str) -> int:
    """``auto``: one worker per visible GPU, else one per core (at most ``CPU_WORKERS_MAX``);
    else the number given (>= 1)."""
    if requested == "auto":
        gpus = visible_gpus()
        return len(gpus) if gpus else max(1, min(available_cores(), CPU_WORKERS_MAX))
    try:
        count = int(requested)
    except ValueError:
        count = 0
    if count < 1:
        raise UserError(f"--workers takes a number of at least 1 or 'auto', got {requested!r}")
    return count


def threads_per_worker(count: int) -> int:
    """Torch threads of each of ``count`` workers: the cores split between them."""
    return max(1, available_cores() // count)


def use_worker_threads(count: int) -> None:
    """Give this process the torch threads of one of ``count`` workers (the parent runs trials
    as worker 0 after torch was imported, so ``OMP_NUM_THREADS`` would come too late)."""
    import torch

    torch.set_num_threads(threads_per_worker(count))


def worker_environments(count: int, base: dict[str, str]) -> list[dict[str, str]]:
    """The environment of each of ``count`` workers: its GPU (round-robin) and thread count."""
    gpus = visible_gpus()
    threads = str(threads_per_worker(count))
    environments = []
    for index in range(count):
        env = {**base, "OMP_NUM_THREADS": threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        environments.append(env)
    return environments
