"""The inner loops on a tiny random-weight timm model and random tensors: no data, no store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainer.engine import NonFiniteLossError, Normalize, evaluate, predict, train_one_epoch
from trainer.metrics import EPOCH_METRICS, EVAL_KEYS, TRAIN_KEYS, epoch_metrics
from trainer.model.backbone import create_probe, data_spec
from trainer.runtime import Execution

CLASSES, SIZE, BATCH = 3, 16, 4
CPU = Execution(torch.device("cpu"), "fp32", False)


def model() -> nn.Module:
    torch.manual_seed(0)
    return create_probe("test_resnet", CLASSES)


def batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 ``N x H x W x 3`` images with labels, as the loader yields them."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8, generator=generator),
            torch.randint(0, CLASSES, (BATCH,), generator=generator),
        )
        for _ in range(count)
    ]


def normalize(net: nn.Module) -> Normalize:
    spec = data_spec(net)
    return Normalize(spec.mean, spec.std)


def halving(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)


def test_an_epoch_trains_and_reports_the_defined_keys() -> None:
    net = model()
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    seen: list[int] = []
    result = train_one_epoch(
        net,
        batches(3),
        optimizer,
        halving(optimizer),
        nn.CrossEntropyLoss(),
        CPU,
        lambda images, loss: seen.append(images),
        normalize(net),
    )
    assert tuple(result) == TRAIN_KEYS
    assert np.isfinite(result["loss"]) and result["loss"] > 0
    assert 0 <= result["acc"] <= 1 and result["seconds"] > 0
    assert result["images_per_second"] == pytest.approx(3 * BATCH / result["seconds"])
    assert seen == [BATCH] * 3
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_the_scheduler_steps_once_per_batch_and_lr_is_the_last_batchs() -> None:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = halving(optimizer)
    result = train_one_epoch(
        net, batches(3), optimizer, scheduler, nn.CrossEntropyLoss(), CPU, None, normalize(net)
    )
    assert scheduler.last_epoch == 3
    assert result["lr"] == pytest.approx(0.1 * 0.5**2)  # the rate the third batch used
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_a_non_finite_loss_stops_the_epoch() -> None:
    class NanLoss(nn.Module):
        def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("nan")

    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"lower train\.lr"):
        train_one_epoch(
            net, batches(2), optimizer, halving(optimizer), NanLoss(), CPU, None, normalize(net)
        )


def test_evaluate_matches_the_model_run_by_hand() -> None:
    net, data = model(), batches(3, seed=1)
    norm = normalize(net)
    metrics, probs, truth = evaluate(net, data, nn.CrossEntropyLoss(), CPU, norm)
    assert tuple(metrics) == EVAL_KEYS
    images = torch.cat([norm(x, CPU) for x, _ in data])
    labels = torch.cat([y for _, y in data])
    with torch.no_grad():
        logits = net.eval()(images)
    assert truth.tolist() == labels.tolist()
    assert probs.shape == (3 * BATCH, CLASSES)
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert metrics["loss"] == pytest.approx(float(nn.CrossEntropyLoss()(logits, labels)), 1e-5)
    assert metrics["acc"] == pytest.approx(float((probs.argmax(1) == truth).mean()))
    assert not net.training


def test_evaluate_and_predict_agree_and_handle_no_batches() -> None:
    net, data = model(), batches(2, seed=2)
    norm = normalize(net)
    _, probs, _ = evaluate(net, data, nn.CrossEntropyLoss(), CPU, norm)
    np.testing.assert_allclose(predict(net, (x for x, _ in data), CPU, norm), probs, atol=1e-6)
    metrics, empty, truth = evaluate(net, [], nn.CrossEntropyLoss(), CPU, norm)
    assert metrics == {"loss": 0.0, "acc": 0.0} and empty.size == 0 and truth.size == 0
    assert predict(net, [], CPU, norm).size == 0


def test_the_engines_results_are_reported_under_the_epoch_metric_names() -> None:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()
    train = train_one_epoch(
        net, batches(2), optimizer, halving(optimizer), loss, CPU, None, normalize(net)
    )
    val, _, _ = evaluate(net, batches(1, seed=3), loss, CPU, normalize(net))
    reported = epoch_metrics(train, val)
    assert tuple(reported) == EPOCH_METRICS
    assert reported["train/loss"] == train["loss"] and reported["val/acc"] == val["acc"]
    assert reported["lr"] == train["lr"]
