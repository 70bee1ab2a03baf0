"""Create timm backbones with a new classifier head, from the hub, a local file, or random init.

The one caller of ``timm.create_model``: training, prediction and the checks before either
build their models here.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import timm
import torch
from timm.utils.model import freeze
from torch import nn

from trainer.config import ModelConfig
from trainer.errors import UserError, one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """What the backbone expects of its input, from timm's data config."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def check_backbone(name: str) -> None:
    """Fail with one line (and close matches) when timm has no model called ``name``."""
    if timm.is_model(name):
        return
    matches = difflib.get_close_matches(name, _model_names(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(matches)}?" if matches else "; see timm.list_models()"
    raise UserError(f"unknown backbone '{name}' in model.backbone{hint}")


def create_model(config: ModelConfig, num_classes: int) -> nn.Module:
    """``timm.create_model`` with ``num_classes`` outputs and the configured starting weights.

    ``weights`` loads a local file through timm's own pretrained path (the classifier is
    dropped when its size differs); ``pretrained`` alone downloads from the Hugging Face hub.
    """
    check_backbone(config.backbone)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": config.drop_rate}
    if config.weights is not None:
        weights = config.weights.expanduser().resolve()
        if not weights.is_file():
            raise UserError(f"weights file not found: {weights} (model.weights)")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    else:
        kwargs.update(pretrained=config.pretrained)
    try:
        model = timm.create_model(config.backbone, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(_describe_load_failure(config, exc)) from exc
    if config.weights is not None:
        _check_weights_fit(model, config.weights)
    if config.freeze_backbone:
        freeze_backbone(model)
    return model


def create_probe(backbone: str, num_classes: int = 2) -> nn.Module:
    """An unpretrained ``backbone`` (random weights, nothing downloaded) for checks before
    training: the input size it takes, its data spec, timing the execution modes."""
    return create_model(ModelConfig(backbone=backbone, pretrained=False), num_classes)


def freeze_backbone(model: nn.Module) -> None:
    """Train only the classifier: backbone weights fixed and its BatchNorm statistics too."""
    head = set(map(id, _classifier(model).parameters()))
    frozen = [name for name, child in model.named_children() if not _has_any(child, head)]
    freeze(model, frozen)


def data_spec(model: nn.Module) -> DataSpec:
    """Mean and std from the backbone's pretrained config."""
    config = timm.data.resolve_model_data_config(model)
    return DataSpec(
        mean=tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
    )


def check_input_size(model: nn.Module, image_size: int, backbone: str) -> None:
    """Fail with one line when ``backbone`` cannot take ``image_size`` px square images: below
    its configured minimum, or rejected by a trial forward pass (patch sizes, windows, fixed
    position embeddings, or a feature map shrunk to nothing)."""
    config = getattr(model, "pretrained_cfg", None) or {}
    minimum = (config.get("min_input_size") or (3, 1, 1))[-1]
    default = (config.get("input_size") or (3, 224, 224))[-1]
    if image_size < minimum:
        raise UserError(
            f"train.image_size {image_size} is below model.backbone {backbone}'s minimum of "
            f"{minimum} px; raise it (the backbone's default is {default})"
        )
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size))
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = one_line(exc, 160)
        raise UserError(
            f"model.backbone {backbone} cannot take {image_size} px images ({reason}); set "
            f"train.image_size to a size it accepts (its default is {default})"
        ) from None
    finally:
        model.train(was_training)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer should update."""
    return [p for p in model.parameters() if p.requires_grad]


def _classifier(model: nn.Module) -> nn.Module:
    get = getattr(model, "get_classifier", None)
    if get is None:
        raise UserError(f"{type(model).__name__} has no get_classifier(); cannot freeze it")
    classifier = get()
    return classifier if isinstance(classifier, nn.Module) else nn.Sequential(*classifier)


def _has_any(module: nn.Module, parameter_ids: set[int]) -> bool:
    return any(id(p) in parameter_ids for p in module.parameters())


def _check_weights_fit(model: nn.Module, path: Path) -> None:
    """timm loads non-strictly when the head changes: make sure the backbone really came from
    the file (every non-classifier tensor present with the same shape)."""
    stored = timm.models.load_state_dict(str(path), weights_only=True)
    head = {id(p) for p in _classifier(model).parameters()}
    head_names = {name for name, p in model.named_parameters() if id(p) in head}
    wanted = {k: v for k, v in model.state_dict().items() if k not in head_names}
    missing = [k for k, v in wanted.items() if k not in stored or stored[k].shape != v.shape]
    if missing:
        raise UserError(
            f"weights file {path} does not fit backbone {type(model).__name__}: "
            f"{len(missing)} of {len(wanted)} tensors missing or of another shape "
            f"(first: {missing[0]}); save a state dict of this backbone"
        )


def _describe_load_failure(config: ModelConfig, exc: Exception) -> str:
    first_line = one_line(exc, 200)
    if config.weights is not None:
        return (
            f"could not load weights {config.weights} into {config.backbone}: {first_line} "
            "(the file must be a state dict for this backbone)"
        )
    if not config.pretrained:  # nothing was downloaded: timm itself refused
        return f"could not create model.backbone {config.backbone}: {first_line}"
    return (
        f"could not download pretrained weights for '{config.backbone}' from the Hugging Face hub "
        f"({first_line}); offline? save the weights once and set model.weights: PATH "
        "(.safetensors or .pth), or set model.pretrained: false"
    )


@cache
def _model_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def to_device(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move the model, in channels-last memory format when asked."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model
