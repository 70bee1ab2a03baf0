"""Runs ``trainer`` with every artifact upload slowed down, recording what the tracker was given.

    python tests/slow_uploads.py EVENTS MARKER -- fit CONFIG --set ...

Each ``MlflowClient.log_artifact`` sleeps ``SECONDS`` first, so the tracker's background writer
has uploads queued at any moment. Every epoch and fold end the tracker accepted is appended to
EVENTS as a JSON line; MARKER is written when the first fold has ended, so a test can send a
signal at a random moment after it and check that everything accepted reached the store.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from trainer.cli import main
from trainer.tracking import MlflowTracker

SECONDS = 0.3


def install(events: Path, marker: Path) -> None:
    upload = MlflowClient.log_artifact

    def slow_upload(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        time.sleep(SECONDS)
        return upload(self, *args, **kwargs)

    def record(**event: Any) -> None:
        with events.open("a") as out:
            out.write(json.dumps(event) + "\n")

    epoch_end, fold_end = MlflowTracker.on_epoch_end, MlflowTracker.on_fold_end

    def on_epoch_end(self: MlflowTracker, fold: Any, epoch: int, metrics: Any) -> None:
        epoch_end(self, fold, epoch, metrics)
        record(event="epoch", fold=fold.name, epoch=epoch)

    def on_fold_end(self: MlflowTracker, fold: Any, summary: Any) -> None:
        fold_end(self, fold, summary)
        record(event="fold", fold=fold.name)
        marker.write_text("a fold has ended")

    MlflowClient.log_artifact = slow_upload  # type: ignore[method-assign]
    MlflowTracker.on_epoch_end = on_epoch_end  # type: ignore[method-assign]
    MlflowTracker.on_fold_end = on_fold_end  # type: ignore[method-assign]


if __name__ == "__main__":
    events_file, marker_file, separator, *argv = sys.argv[1:]
    assert separator == "--"
    install(Path(events_file), Path(marker_file))
    sys.exit(main(argv))
