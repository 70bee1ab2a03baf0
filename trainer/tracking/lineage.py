"""What a fit's run records of where its numbers came from: the dataset it was given (one row
per image: path, label, split), the split file, the config and the images it skipped."""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient

from trainer.callbacks import FitInfo
from trainer.data.dataset import printable
from trainer.data.scan import SKIPPED_FILE
from trainer.tracking.explore import log_dataset


def log_lineage(client: MlflowClient, run_id: str, info: FitInfo) -> None:
    """Logs the fit's dataset input and its split, config and skipped-images files to ``run_id``."""
    samples, splits = info.samples, info.splits
    split_names = {int(i): "test" for i in splits.test}
    frame = pd.DataFrame(
        {
            "path": [printable(path) for path in samples.relative_paths],
            "label": [samples.class_names[k] for k in samples.labels],
            "split": [split_names.get(i, "trainval") for i in range(len(samples))],
        }
    )
    log_dataset(
        client, run_id, frame, info.data_digest, samples.root, "training", text_columns=True
    )
    client.log_artifact(run_id, str(splits.path), "splits")
    client.log_artifact(run_id, str(info.run_dir / "config.yaml"))
    if info.skipped:
        client.log_artifact(run_id, str(info.run_dir / SKIPPED_FILE), "data")
