"""Backbone creation: names, local weights, freezing, the offline hub failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from trainer.config import ModelConfig, TrainConfig
from trainer.errors import UserError
from trainer.model.backbone import create_model, create_probe, trainable_parameters
from trainer.model.optim import create_optimizer


def test_unknown_backbone_suggests_close_matches() -> None:
    with pytest.raises(UserError, match=r"unknown backbone 'resnet181'.*did you mean resnet18"):
        create_model(ModelConfig(backbone="resnet181", pretrained=False), 3)


def test_offline_hub_download_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # What a machine without network sees, without waiting for the hub client's retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as info:
        create_model(ModelConfig(backbone="test_resnet", pretrained=True), 3)
    message = str(info.value)
    assert "\n" not in message
    assert "set model.weights: PATH" in message and "model.pretrained: false" in message


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_is_really_loaded(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(123)
    source = timm.create_model("test_resnet", pretrained=False)  # 1000-class head
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(0)
    random_init = timm.create_model("test_resnet", pretrained=False, num_classes=3).state_dict()
    loaded = create_model(ModelConfig(backbone="test_resnet", weights=path), 3).state_dict()
    backbone_keys = [k for k in loaded if not k.startswith("fc.") and k in state]
    assert backbone_keys
    for key in backbone_keys:
        assert torch.equal(loaded[key], state[key]), key
    assert any(not torch.equal(loaded[k], random_init[k]) for k in backbone_keys if "weight" in k)
    assert loaded["fc.weight"].shape[0] == 3  # new head for our classes


def test_missing_or_wrong_weights_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="weights file not found"):
        create_model(ModelConfig(backbone="test_resnet", weights=tmp_path / "x.safetensors"), 3)
    bad = tmp_path / "other.safetensors"
    save_file({"unrelated": torch.zeros(2)}, str(bad))
    with pytest.raises(UserError, match="does not fit backbone"):
        create_model(ModelConfig(backbone="test_resnet", weights=bad), 3)


def test_freezing_trains_only_the_head() -> None:
    model = create_model(
        ModelConfig(backbone="test_resnet", pretrained=False, freeze_backbone=True), 3
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=0.1)
    model.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(
            model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}


# PyTorch's per-parameter loop: what create_optimizer gave before it fused
_REFERENCE = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@pytest.mark.parametrize("name", sorted(_REFERENCE))
@pytest.mark.parametrize("frozen", [False, True])
def test_the_optimizer_is_fused_and_makes_the_same_update(name: str, frozen: bool) -> None:
    model_config = ModelConfig(backbone="test_resnet", pretrained=False, freeze_backbone=frozen)
    train = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.01)
    model = create_model(model_config, 3)
    twin = [p.detach().clone().requires_grad_(True) for p in trainable_parameters(model)]
    momentum = {"momentum": train.momentum} if name == "sgd" else {}
    reference = _REFERENCE[name](
        twin, lr=train.lr, weight_decay=train.weight_decay, foreach=False, **momentum
    )
    fused = create_optimizer(model, train)
    assert fused.defaults["fused"] is True
    generator = torch.Generator().manual_seed(0)
    # The same random gradients to both: on a model's own near-zero gradients, Adam's step is
    # a matter of sign, and one rounding apart would send the two apart.
    for _ in range(3):
        for ours, theirs in zip(trainable_parameters(model), twin, strict=True):
            ours.grad = torch.randn(ours.shape, generator=generator)
            theirs.grad = ours.grad.clone()
        fused.step()
        reference.step()
    for ours, theirs in zip(trainable_parameters(model), twin, strict=True):
        torch.testing.assert_close(ours.detach(), theirs.detach())


class _Payload:
    """Runs code when unpickled: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "pwned"))  # type: ignore[return-value]


def test_pickled_weights_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    weights = timm.create_model("test_resnet", pretrained=False).state_dict()
    malicious = tmp_path / "weights.pth"
    torch.save({**weights, "extra": _Payload(marker)}, malicious)
    with pytest.raises(UserError, match="could not load weights") as caught:
        create_model(ModelConfig(backbone="test_resnet", weights=malicious), 3)
    assert "\n" not in str(caught.value)
    assert not marker.exists()  # loaded with weights_only=True: the payload never ran


def test_a_probe_is_unpretrained_without_download_and_checks_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no weights needed
    probe = create_probe("test_resnet")
    assert probe.get_classifier().out_features == 2
    assert all(p.requires_grad for p in probe.parameters())
    assert create_probe("test_resnet", 5).get_classifier().out_features == 5
    with pytest.raises(UserError, match="unknown backbone 'resnet181'"):
        create_probe("resnet181")


def test_timm_refusing_a_random_init_is_not_called_a_download_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("\n  no such variant here\nsecond line")

    monkeypatch.setattr(timm, "create_model", refuse)
    with pytest.raises(UserError) as info:
        create_probe("test_resnet")
    assert str(info.value) == "could not create model.backbone test_resnet: no such variant here"
