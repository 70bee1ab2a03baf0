"""MLflow tracking: the one package of ``trainer`` that imports mlflow.

- ``store``: where runs go (tracking URI, experiments, metric keys);
- ``tracker``: the callback that logs a fit as a run tree;
- ``runs``: rebuilding a fit's config from its run (``trainer fit --from-run``);
- ``served``: the fit's model as an MLflow pyfunc model (``mlflow models serve``);
- ``loading``: loading a logged or registered model from its weights, executing nothing.
"""

from trainer.tracking.loading import load_logged_model
from trainer.tracking.runs import config_from_run
from trainer.tracking.served import ImageClassifier, model_signature
from trainer.tracking.store import (
    EMBEDDED_STORE,
    MODEL_URI_TAG,
    PARENT_RUN_TAG,
    ensure_experiment,
    metric_key,
    tracking_uri,
)
from trainer.tracking.tracker import MlflowTracker

__all__ = [
    "EMBEDDED_STORE",
    "MODEL_URI_TAG",
    "PARENT_RUN_TAG",
    "ImageClassifier",
    "MlflowTracker",
    "config_from_run",
    "ensure_experiment",
    "load_logged_model",
    "metric_key",
    "model_signature",
    "tracking_uri",
]
