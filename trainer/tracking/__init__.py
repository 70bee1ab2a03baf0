"""MLflow tracking: the one package of ``trainer`` that imports mlflow.

- ``store``: where runs go (tracking URI, experiments, metric keys);
- ``tracker``: the callback that logs a fit as a run tree;
- ``runs``: rebuilding a fit's config from its run (``trainer fit --from-run``);
- ``served``: the fit's model as an MLflow pyfunc model (``mlflow models serve``);
- ``loading``: loading a logged or registered model from its weights, executing nothing.

The names below are imported on first use: ``trainer predict`` needs ``loading`` only, not the
tracker's plotting and metrics libraries nor the pyfunc machinery of ``served``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.tracking.batching import metrics_at
    from trainer.tracking.loading import load_logged_model
    from trainer.tracking.runs import config_from_run
    from trainer.tracking.served import ImageClassifier, model_signature
    from trainer.tracking.store import (
        EMBEDDED_STORE,
        MODEL_URI_TAG,
        PARENT_RUN_TAG,
        ensure_experiment,
        metric_key,
        open_client,
        tracking_uri,
    )
    from trainer.tracking.tracker import MlflowTracker

_HOMES = {
    "EMBEDDED_STORE": "store",
    "MODEL_URI_TAG": "store",
    "PARENT_RUN_TAG": "store",
    "ImageClassifier": "served",
    "MlflowTracker": "tracker",
    "config_from_run": "runs",
    "ensure_experiment": "store",
    "load_logged_model": "loading",
    "metric_key": "store",
    "metrics_at": "batching",
    "model_signature": "served",
    "open_client": "store",
    "tracking_uri": "store",
}

__all__ = [  # the keys of _HOMES (a test keeps them equal)
    "EMBEDDED_STORE",
    "MODEL_URI_TAG",
    "PARENT_RUN_TAG",
    "ImageClassifier",
    "MlflowTracker",
    "config_from_run",
    "ensure_experiment",
    "load_logged_model",
    "metric_key",
    "metrics_at",
    "model_signature",
    "open_client",
    "tracking_uri",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
