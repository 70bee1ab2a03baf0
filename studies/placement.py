"""Where a study's worker processes run: one trial per GPU.

``--workers auto`` starts one worker per visible GPU (one on a machine without), and
``--workers W`` spreads W workers over the GPUs round-robin. Each worker sees only its own GPU
(``CUDA_VISIBLE_DEVICES``), so its trials run there as ``cuda:0``; the CPU threads are split
between the workers so that they do not oversubscribe the cores.
"""

from __future__ import annotations

import os

from trainer.errors import UserError
from trainer.runtime import available_cores


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all CUDA devices."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip() and item.strip() != "-1"]
    import torch  # only here: `studies --help` and the report need no torch

    return [str(index) for index in range(torch.cuda.device_count())]


def worker_count(requested: str) -> int:
    """``auto``: one worker per visible GPU (at least one); else the number given (>= 1)."""
    if requested == "auto":
        return max(1, len(visible_gpus()))
    try:
        count = int(requested)
    except ValueError:
        count = 0
    if count < 1:
        raise UserError(f"--workers takes a number of at least 1 or 'auto', got {requested!r}")
    return count


def worker_environments(count: int, base: dict[str, str]) -> list[dict[str, str]]:
    """The environment of each of ``count`` workers: its GPU (round-robin) and thread count."""
    gpus = visible_gpus()
    threads = str(max(1, available_cores() // count))
    environments = []
    for index in range(count):
        env = {**base, "OMP_NUM_THREADS": threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        environments.append(env)
    return environments
