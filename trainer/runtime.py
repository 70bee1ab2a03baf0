"""Device, numeric precision and memory format, and seeding.

On CUDA, ``precision: auto`` is mixed precision (bf16 where supported, else fp16 with a
gradient scaler). On CPU it depends on the model: bf16 autocast roughly doubles resnet18 on
CPUs with avx512_bf16/AMX but slows mobilenetv3, and channels-last helps some models only.
On CUDA channels-last speeds up most steps but costs backbones with depthwise convolutions
12-17 s on the first step of every new input shape in every process. So ``auto`` times a few
training steps of each candidate mode on random input (the first step apart from the steady
ones), caches the timings per machine, torch version, backbone, image size and batch size, and
keeps the mode whose first step plus the fit's planned steps cost least with a finite loss.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from trainer.config import RuntimeConfig

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Execution:
    """How tensors are computed: device, autocast dtype (None = fp32) and memory format."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return _DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Context in which forward passes run."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients need loss scaling; bf16 and fp32 do not."""
        return self.precision == "fp16"

    def describe(self) -> str:
        """e.g. ``cpu bf16 channels_last``."""
        return f"{self.device.type} {self.precision}" + (
            " channels_last" if self.channels_last else ""
        )


def seed_everything(
    seed: int, deterministic: bool = True, cudnn_benchmark: bool | str = "auto"
) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels where it has them.

    Without determinism, cuDNN autotuning (``benchmark``) is on unless turned off: it picks the
    fastest convolution algorithms per input shape, which need not be deterministic.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = cudnn_benchmark in (True, "auto")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def select_device(requested: str) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from trainer.errors import UserError

        raise UserError("runtime.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(requested)


class StepTimes(NamedTuple):
    """Seconds of the first training step of a mode in a process and of a later one."""

    first: float
    steady: float

    def cost(self, steps: int) -> float:
        """Seconds for ``steps`` training steps in a fresh process."""
        return self.first + self.steady * max(steps - 1, 0)


def resolve_execution(
    config: RuntimeConfig,
    model: nn.Module,
    image_size: int,
    batch_size: int,
    key: str,
    planned_steps: int = 1000,
) -> Execution:
    """Settle ``precision`` and ``channels_last`` for this model on this device.

    ``planned_steps`` (training steps of the fit) weighs a mode's one-off first-step cost
    against its per-step gain.
    """
    device = select_device(config.device)
    if device.type == "mps":
        precision = "fp32" if config.precision == "auto" else config.precision
        return Execution(device, precision, config.channels_last is True)
    candidates = _candidates(config, device)
    if len(candidates) == 1:
        return candidates[0]
    probe_batch = batch_size if device.type == "cuda" else min(batch_size, 32)
    timings = _timings_cached(candidates, model, image_size, probe_batch, key)
    costs = {name: times.cost(planned_steps) for name, times in timings.items()}
    best = min(costs, key=lambda name: costs[name])
    log.info(
        "execution auto: %s for %d steps (seconds first/later step: %s)",
        best,
        planned_steps,
        _fmt(timings),
    )
    return {c.describe(): c for c in candidates}[best]


def _candidates(config: RuntimeConfig, device: torch.device) -> list[Execution]:
    if config.precision != "auto":
        precisions = [config.precision]
    elif device.type == "cuda":
        precisions = ["bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    else:
        precisions = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    layouts = [False, True] if config.channels_last == "auto" else [bool(config.channels_last)]
    return [Execution(device, p, cl) for p in precisions for cl in layouts]


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (avx512_bf16 or AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check and check())


def _timings_cached(
    candidates: list[Execution], model: nn.Module, size: int, batch: int, key: str
) -> dict[str, StepTimes]:
    cache_file = _cache_dir() / "execution.json"
    device = candidates[0].device
    machine = platform.processor() or platform.machine()
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    full_key = f"{machine}|{torch.__version__}|{torch.get_num_threads()}t|{key}|{size}px|b{batch}"
    known = _read_json(cache_file)
    names = {c.describe(): c for c in candidates}
    cached = known.get(full_key)
    if isinstance(cached, dict) and set(cached) == set(names):
        return {name: StepTimes(*cached[name]) for name in names}
    if device.type == "cuda":  # CUDA, cuBLAS and cuDNN start-up is no mode's first-step cost
        time_training_step(model, Execution(device, candidates[0].precision, False), size, 2, 1)
    # Two interleaved rounds, best of each: a burst of other load during one measurement
    # cannot make a fast mode look slow. The first step is the first round's, which ran cold.
    rounds = [
        {n: time_training_step(model, c, size, batch) for n, c in names.items()} for _ in "ab"
    ]
    timings = {
        name: StepTimes(rounds[0][name].first, min(r[name].steady for r in rounds))
        for name in names
    }
    known[full_key] = {name: list(times) for name, times in timings.items()}
    _write_json(cache_file, known)
    return timings


def time_training_step(
    model: nn.Module, execution: Execution, size: int, batch: int, steps: int = 3
) -> StepTimes:
    """Seconds of the first and the median later training step on random input (inf if the
    loss is not finite)."""
    probe = copy.deepcopy(model).to(execution.device).train()
    if execution.channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-4)
    inputs = torch.randn(batch, 3, size, size, device=execution.device)
    if execution.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with execution.autocast():
            loss = probe(inputs).float().logsumexp(dim=1).mean()
        if not torch.isfinite(loss):
            return StepTimes(float("inf"), float("inf"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if execution.device.type == "cuda":
            torch.cuda.synchronize(execution.device)
        times.append(time.perf_counter() - start)
    return StepTimes(times[0], float(np.median(times[1:])))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "timm-studies"


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Written aside and renamed: a study's other workers may be reading it at this moment.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f"{path.name}.{os.getpid()}")
        aside.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(aside, path)


def _fmt(timings: dict[str, StepTimes]) -> str:
    return ", ".join(f"{name} {t.first:.3f}/{t.steady:.3f}" for name, t in timings.items())
