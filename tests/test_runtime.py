"""Device and precision selection: the CPU paths, and the CPU fallbacks of the GPU ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from trainer import runtime
from trainer.config import RuntimeConfig
from trainer.errors import UserError
from trainer.runtime import Execution, StepTimes, resolve_execution, select_device


@pytest.fixture
def model() -> torch.nn.Module:
    return timm.create_model("test_resnet", pretrained=False, num_classes=3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


def test_auto_device_falls_back_to_cpu_and_cuda_request_is_refused() -> None:
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA device"):
            select_device("cuda")


def test_auto_times_candidates_once_then_reads_cache(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed: list[str] = []

    def fake_timing(_m: object, execution: Execution, *_: object) -> StepTimes:
        timed.append(execution.describe())
        fast = execution.precision == "bf16" and execution.channels_last
        return StepTimes(1.0, 1.0) if fast else StepTimes(2.0, 2.0)

    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "time_training_step", fake_timing)
    config = RuntimeConfig(device="cpu", precision="auto", channels_last="auto")
    first = resolve_execution(config, model, 32, 8, key="test_resnet")
    modes = ["cpu fp32", "cpu fp32 channels_last", "cpu bf16", "cpu bf16 channels_last"]
    assert timed == modes + modes  # two interleaved rounds
    assert (first.precision, first.channels_last) == ("bf16", True)
    timed.clear()
    again = resolve_execution(config, model, 32, 8, key="test_resnet")
    assert again == first and timed == []  # cached per machine, model, size, batch


def test_a_load_spike_during_one_measurement_does_not_decide(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[str] = []

    def spiky_timing(_m: object, execution: Execution, *_: object) -> StepTimes:
        seen.append(execution.describe())
        if execution.describe() == "cpu fp32 channels_last":  # truly fastest...
            hit = seen.count("cpu fp32 channels_last") == 1  # ...but hit once
            return StepTimes(1.0, 9.0 if hit else 1.0)
        return StepTimes(2.0, 2.0)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(runtime, "time_training_step", spiky_timing)
    config = RuntimeConfig(device="cpu", precision="auto", channels_last="auto")
    chosen = resolve_execution(config, model, 32, 8, key="spike")
    assert chosen.describe() == "cpu fp32 channels_last"


def test_bf16_is_not_a_candidate_without_cpu_support(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    config = RuntimeConfig(device="cpu", precision="auto", channels_last=False)
    assert resolve_execution(config, model, 16, 4, key="k").precision == "fp32"


def test_non_finite_mode_is_never_chosen(model: torch.nn.Module) -> None:
    broken = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    with torch.no_grad():
        broken.get_classifier().bias.fill_(float("nan"))
    cpu = Execution(torch.device("cpu"), "fp32", False)
    assert runtime.time_training_step(broken, cpu, 16, 2).steady == float("inf")
    assert runtime.time_training_step(model, cpu, 16, 2).steady < float("inf")


def test_real_measurement_picks_a_working_mode(model: torch.nn.Module) -> None:
    config = RuntimeConfig(device="cpu", precision="auto", channels_last="auto")
    execution = resolve_execution(config, model, 16, 4, key="real")
    with execution.autocast():
        out = model.to(
            memory_format=torch.channels_last
            if execution.channels_last
            else torch.contiguous_format
        )(torch.randn(2, 3, 16, 16))
    assert torch.isfinite(out.float()).all()


def test_fp16_needs_a_grad_scaler_and_bf16_does_not() -> None:
    cpu = torch.device("cpu")
    assert Execution(cpu, "fp16", False).needs_grad_scaler
    assert not Execution(cpu, "bf16", True).needs_grad_scaler
    assert Execution(cpu, "fp32", False).autocast_dtype is None


def test_cudnn_autotuning_is_on_only_without_determinism() -> None:
    from trainer.runtime import seed_everything

    try:
        seed_everything(0, deterministic=False)
        assert torch.backends.cudnn.benchmark is True
        assert not torch.are_deterministic_algorithms_enabled()
        seed_everything(0, deterministic=False, cudnn_benchmark=False)
        assert torch.backends.cudnn.benchmark is False
    finally:
        seed_everything(0, deterministic=True)
    assert torch.backends.cudnn.benchmark is False
    assert torch.are_deterministic_algorithms_enabled()


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, timed: list[str]) -> None:
    """A CUDA device whose channels-last first step costs 15 s and saves 10 ms a step after
    (the depthwise-convolution penalty measured on an H100)."""

    def depthwise_timing(_m: object, execution: Execution, *_: object) -> StepTimes:
        timed.append(execution.describe())
        return StepTimes(15.0, 0.02) if execution.channels_last else StepTimes(0.5, 0.03)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(runtime, "select_device", lambda _r: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "Fake GPU")
    monkeypatch.setattr(runtime, "time_training_step", depthwise_timing)


def test_cuda_channels_last_is_decided_by_the_fit_length(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    timed: list[str] = []
    _fake_cuda(monkeypatch, tmp_path, timed)
    config = RuntimeConfig(device="auto", precision="auto", channels_last="auto")
    short = resolve_execution(config, model, 224, 128, key="efficientnet_b0", planned_steps=200)
    assert short.describe() == "cuda bf16"  # 15 s up front is not won back in 200 steps
    rounds = ["cuda bf16", "cuda bf16 channels_last"] * 2
    assert timed == ["cuda bf16", *rounds]  # a warm-up step, then two interleaved rounds
    timed.clear()
    long = resolve_execution(config, model, 224, 128, key="efficientnet_b0", planned_steps=5000)
    assert long.describe() == "cuda bf16 channels_last" and timed == []  # timings cached


def test_cuda_honours_an_explicit_memory_format(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    timed: list[str] = []
    _fake_cuda(monkeypatch, tmp_path, timed)
    config = RuntimeConfig(device="auto", precision="auto", channels_last=True)
    assert resolve_execution(config, model, 224, 128, key="k").describe() == (
        "cuda bf16 channels_last"
    )
    assert timed == []  # nothing to decide, nothing timed


def test_the_first_step_is_weighed_against_the_steps_it_saves() -> None:
    times = StepTimes(first=10.0, steady=0.5)
    assert times.cost(1) == 10.0
    assert times.cost(3) == 11.0
