"""Optimizer and the per-batch cosine schedule."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from trainer.config import TrainConfig
from trainer.model.backbone import trainable_parameters


def create_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (default), AdamW or SGD with momentum over the trainable parameters."""
    params = trainable_parameters(model)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def create_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, epochs: int
) -> LRScheduler:
    """Cosine from ``lr`` to ``min_lr`` over ``steps_per_epoch x epochs`` batches.

    With ``warmup_epochs``, a linear warmup covers the first batches and the cosine the rest.
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=config.min_lr)
    if warmup <= 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
