"""The notebook's search, for the time-to-best bench: an Optuna study written the tutorial's way.

Every sample is read with OpenCV and augmented by albumentations in a default DataLoader, each
trial is an MLflow run with one ``log_metric`` call per epoch, no cache, no pruning, fp32. The
data, holdout, folds and training settings here are the ones ``studies run`` gets in the bench.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.tutorial import TutorialDataset

SEED, FOLDS, TEST_SIZE, BATCH = 42, 3, 0.1, 64  # SEED: data, holdout, folds, training
AUGMENT = [A.Rotate(limit=10, p=0.5), A.CoarseDropout(p=0.3)]  # as the demo config


def tutorial_fold(
    params: dict[str, Any],
    paths: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
) -> list[float]:
    """One fold the notebook way; returns validation accuracy per epoch."""
    import mlflow
    import timm

    size, epochs = params["train.image_size"], params["train.epochs"]
    model = timm.create_model(params["model.backbone"], pretrained=False, num_classes=10)
    train_loader = DataLoader(
        TutorialDataset(paths[train], labels[train], size, AUGMENT), BATCH, shuffle=True
    )
    val_loader = DataLoader(TutorialDataset(paths[val], labels[val], size), BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["train.lr"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train_loader))
    accuracies = []
    for epoch in range(epochs):
        model.train()
        for images, targets in train_loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), targets).backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, targets in val_loader:
                correct += int((model(images).argmax(1) == targets).sum())
        accuracies.append(correct / len(val))
        mlflow.log_metric("val_acc", accuracies[-1], step=epoch)
    return accuracies


def run_tutorial(
    root: Path, trials: int, seed: int
) -> tuple[list[tuple[float, float]], list[dict[str, Any]]]:
    """The baseline search; returns (seconds since start, value) and the parameters of each
    finished trial, in the order they finished."""
    import mlflow
    import optuna
    from sklearn.model_selection import StratifiedKFold, train_test_split

    files = sorted(root.glob("*/*.*"))
    paths = np.array([str(f) for f in files])
    labels = np.array([int(f.parent.name) for f in files])
    keep, _ = train_test_split(
        np.arange(len(files)), test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(keep, labels[keep]))
    mlflow.set_experiment("tutorial-baseline")
    finished: list[tuple[float, float]] = []
    tried: list[dict[str, Any]] = []
    start = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        params = {
            "train.lr": trial.suggest_float("train.lr", 1e-4, 1e-2, log=True),
            "train.epochs": trial.suggest_int("train.epochs", 2, 4),
            "train.image_size": trial.suggest_int("train.image_size", 16, 32, step=16),
            "model.backbone": trial.suggest_categorical(
                "model.backbone", ["test_resnet", "test_efficientnet"]
            ),
        }
        with mlflow.start_run():
            mlflow.log_params(params)
            bests = [max(tutorial_fold(params, paths, labels, keep[t], keep[v])) for t, v in folds]
            value = float(np.mean(bests))
            mlflow.log_metric("cv_acc", value)
        finished.append((time.perf_counter() - start, value))
        tried.append(params)
        return value

    from studies.sampling import create_sampler

    sampler = create_sampler(seed, n_startup_trials=4)  # seeded exactly as studies run seeds it
    optuna.create_study(direction="maximize", sampler=sampler).optimize(objective, trials)
    return finished, tried
