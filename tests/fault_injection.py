"""Runs ``studies`` with a pause injected at one point of the second trial, for fault tests.

    python tests/fault_injection.py PHASE MARKER -- run study.yaml --storage journal.log

PHASE is where the second trial (the first has finished by then) stops: ``claimed`` (right
after the storage turned it RUNNING, before anything else), ``loading`` (fetching images),
``epoch`` (after the third optimiser step) or ``checkpoint`` (logging its first checkpoint file
to MLflow). On getting there the process writes MARKER and sleeps, so the
test can send a signal at exactly that point.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.trial import TrialState

import studies.objective
from studies.cli import main
from studies.storage import ShieldedJournalStorage
from trainer.data.cache import ImageCache

counts = {"fits": 0, "steps": 0}


def pause_here(marker: Path) -> None:
    marker.write_text("paused")
    time.sleep(600)


def install(phase: str, marker: Path) -> None:
    original_fit = studies.objective.fit

    def counted_fit(*args: Any, **kwargs: Any) -> Any:
        counts["fits"] += 1
        return original_fit(*args, **kwargs)

    studies.objective.fit = counted_fit  # type: ignore[assignment]
    if phase == "claimed":  # after the storage call: a signal inside one waits for its end
        set_state = ShieldedJournalStorage.set_trial_state_values

        def paused_set(self: JournalStorage, trial_id: int, state: TrialState, *rest: Any) -> bool:
            changed = set_state(self, trial_id, state, *rest)
            if changed and state == TrialState.RUNNING and counts["fits"] == 1:
                pause_here(marker)
            return changed

        ShieldedJournalStorage.set_trial_state_values = paused_set  # type: ignore[method-assign]
    elif phase == "loading":
        get = ImageCache.get

        def paused_get(self: ImageCache, index: int) -> Any:
            if counts["fits"] == 2:
                pause_here(marker)
            return get(self, index)

        ImageCache.get = paused_get  # type: ignore[method-assign]
    elif phase == "epoch":
        step = torch.optim.Adam.step

        def paused_step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
            counts["steps"] += counts["fits"] == 2
            if counts["steps"] == 3:
                pause_here(marker)
            return step(self, *args, **kwargs)

        torch.optim.Adam.step = paused_step  # type: ignore[method-assign]
    elif phase == "checkpoint":
        log_artifact = MlflowClient.log_artifact

        def paused_log(self: MlflowClient, run_id: str, local_path: str, *rest: Any) -> Any:
            if counts["fits"] == 2 and str(local_path).endswith(".safetensors"):
                pause_here(marker)
            return log_artifact(self, run_id, local_path, *rest)

        MlflowClient.log_artifact = paused_log  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown phase {phase}")


if __name__ == "__main__":
    phase, marker, separator, *argv = sys.argv[1:]
    assert separator == "--"
    install(phase, Path(marker))
    sys.exit(main(argv))
