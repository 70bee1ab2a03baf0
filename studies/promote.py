"""``studies promote``: refit the best trial, register it, and move ``champion`` on evidence.

1. The best COMPLETE trial (CV mean, ties: lower CV std) is read from the tracking store.
2. Its logged config is refit on all non-test data as a run nested under the trial run (an
   earlier refit of the same trial and data digest is reused) and scored on the study's holdout.
   The trainer's own rules apply: the config is rebuilt as ``trainer fit --from-run`` does
   (execution mode pinned, split file restored) and trains ``trainer.folds.refit_epochs``.
3. The refit's model becomes a new version of the registered model, alias ``challenger``, with
   tags naming the study, trial, runs, data digest, split file and holdout accuracy.
4. ``champion`` moves to it only if it beats the current champion on the same holdout (same
   data digest and split file); both accuracies and an exact McNemar test on the two models'
   holdout predictions are recorded as version tags. ``--force`` moves it anyway, and says so.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from scipy.stats import binomtest

from studies.report.data import best_trial, load_study
from trainer.errors import UserError
from trainer.fit import refit_only
from trainer.folds import refit_epochs
from trainer.tracking import MODEL_URI_TAG, PARENT_RUN_TAG, MlflowTracker, open_client
from trainer.tracking.runs import config_from_run, fold_results

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
REFIT_OF = "promote.refit_of"  # tag on a promotion refit run: the trial run it refits
PROMOTED_REFIT = "promote.refit_run"  # tag on a promoted trial's run: its refit run
REFIT_SETTINGS = ["tracking.enabled=true", "tracking.log_model=true"]  # a refit logs its model


@dataclass(frozen=True)
class Refit:
    """A finished promotion refit: where its model and holdout predictions are."""

    run_id: str  # the refit's run (holds the logged model)
    predictions_run_id: str  # its `refit` child (holds test_predictions.csv)
    holdout_acc: float
    data_digest: str
    split_file: str
    images: int  # trained on: all non-test images
    epochs: int
    backbone: str
    image_size: str


def promote(study_name: str, model_name: str | None = None, force: bool = False) -> ModelVersion:
    """Promote the best trial of ``study_name``; returns the new model version."""
    client = open_client()
    mlflow.set_tracking_uri(client.tracking_uri)
    study = load_study(client, study_name)
    complete = study.trials[study.trials["state"] == "COMPLETE"]
    best = best_trial(complete)
    log.info("best trial: %d (CV %.4f ± %.4f)", best["trial"], best["value"], best["cv_std"] or 0.0)
    refit = _refit(client, study.experiment_id, str(best["run_id"]))
    _record_on_trial(client, str(best["run_id"]), refit)
    name = model_name or study_name
    version = _register(client, name, refit, study_name, int(best["trial"]), str(best["run_id"]))
    _decide(client, name, version, refit, force)
    final = client.get_model_version(name, version.version)
    client.update_model_version(name, version.version, describe_version(final, best, refit))
    return client.get_model_version(name, version.version)


def _record_on_trial(client: MlflowClient, trial_run_id: str, refit: Refit) -> None:
    """The refit's holdout accuracy on the trial's own run too, where the report and the UI's
    run table read a trial's ``test/acc``; the tag points at the refit run."""
    client.log_metric(trial_run_id, "test/acc", refit.holdout_acc)
    client.set_tag(trial_run_id, PROMOTED_REFIT, refit.run_id)


def describe_version(version: ModelVersion, best: pd.Series, refit: Refit) -> str:
    """The few lines of markdown the registry shows first for a promoted version."""
    tags = version.tags
    evidence = ""
    if "compared_with_version" in tags:
        evidence = (
            f"\n- Against version {tags['compared_with_version']}: holdout "
            f"{float(tags['challenger_holdout_acc']):.4f} vs "
            f"{float(tags['champion_holdout_acc']):.4f}, McNemar p = {tags['mcnemar_p_value']}"
        )
    return (
        f"**{tags.get('study', '')} trial {tags.get('trial', '')}**: `{refit.backbone}` at "
        f"{refit.image_size} px\n"
        f"- Trained on {refit.images} images (all non-test data) for {refit.epochs} epochs\n"
        f"- CV mean val accuracy {best['value']:.4f} ± {float(best['cv_std'] or 0):.4f}\n"
        f"- Holdout accuracy {refit.holdout_acc:.4f}\n"
        f"- Decision: {tags.get('decision', 'none')}{evidence}"
    )


def _refit(client: MlflowClient, experiment_id: str, trial_run_id: str) -> Refit:
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{REFIT_OF}` = '{trial_run_id}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    trial = client.get_run(trial_run_id)
    digest = trial.data.tags.get("data.digest", "")
    for run in earlier:
        if run.data.tags.get("data.digest") == digest:
            log.info("reusing refit run %s of this trial and data", run.info.run_id)
            return _refit_of(client, run.info.run_id)
    # The trial's fit reproduced as `trainer fit --from-run` does (execution mode pinned, split
    # file restored), refit for as many epochs as the trainer's own refit would train.
    config, trial_tags = config_from_run(trial_run_id, REFIT_SETTINGS, client)
    epochs = refit_epochs(config, fold_results(trial_run_id, client))
    tags = {
        PARENT_RUN_TAG: trial_run_id,
        REFIT_OF: trial_run_id,
        "mlflow.runName": f"refit-{trial.info.run_name}",
    }
    tracker = MlflowTracker(
        config.tracking, config.experiment, reference_tags=trial_tags, extra_tags=tags
    )
    refit_only(config, epochs, [tracker])
    return _refit_of(client, tracker.parent_id)


def _refit_of(client: MlflowClient, run_id: str) -> Refit:
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}'"
    )
    refit_child = next(c for c in children if c.info.run_name == "refit")
    return Refit(
        run_id=run_id,
        predictions_run_id=refit_child.info.run_id,
        holdout_acc=float(run.data.metrics["test/acc"]),
        data_digest=run.data.tags.get("data.digest", ""),
        split_file=run.data.tags.get("data.split_file", ""),
        images=int(refit_child.data.tags.get("n_train", 0)),
        epochs=int(refit_child.data.metrics.get("epochs_trained", 0)),
        backbone=run.data.params.get("model.backbone", "?"),
        image_size=run.data.params.get("train.image_size", "?"),
    )


def _register(
    client: MlflowClient, name: str, refit: Refit, study: str, trial: int, trial_run_id: str
) -> ModelVersion:
    source = client.get_run(refit.run_id).data.tags.get(MODEL_URI_TAG)
    if not source:
        raise UserError(f"refit run {refit.run_id} logged no model (tracking.log_model was off)")
    version = mlflow.register_model(source, name)
    tags = {
        "study": study,
        "trial": str(trial),
        "trial_run_id": trial_run_id,
        "refit_run_id": refit.run_id,
        "predictions_run_id": refit.predictions_run_id,
        "data_digest": refit.data_digest,
        "split_file": refit.split_file,
        "holdout_acc": f"{refit.holdout_acc:.6f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info(
        "registered %s version %s (holdout accuracy %.4f) as %s",
        name,
        version.version,
        refit.holdout_acc,
        CHALLENGER,
    )
    return version


def _decide(
    client: MlflowClient, name: str, version: ModelVersion, refit: Refit, force: bool
) -> None:
    """Move ``champion`` to ``version`` if it beats the champion on the same holdout (or with
    ``force``); the comparison is recorded as tags of ``version``."""
    champion = _champion(client, name)
    number = version.version
    if champion is None:
        _crown(client, name, number, "first version of the model")
        return
    same_holdout = _same_holdout(name, champion, refit, force)
    champion_acc = float(champion.tags.get("holdout_acc", "nan"))
    p_value = _mcnemar(client, champion, refit) if same_holdout else float("nan")
    evidence = {
        "compared_with_version": champion.version,
        "champion_holdout_acc": f"{champion_acc:.6f}",
        "challenger_holdout_acc": f"{refit.holdout_acc:.6f}",
        "mcnemar_p_value": f"{p_value:.6g}",
    }
    for key, value in evidence.items():
        client.set_model_version_tag(name, number, key, value)
    if force:
        client.set_model_version_tag(name, number, "forced", "true")
        _crown(client, name, number, f"forced over version {champion.version}")
    elif refit.holdout_acc > champion_acc:
        better = f"{refit.holdout_acc:.4f} > {champion_acc:.4f} (McNemar p = {p_value:.3g})"
        _crown(client, name, number, f"holdout {better}")
    else:
        client.set_model_version_tag(name, number, "decision", "kept champion")
        log.info(
            "champion stays version %s: challenger holdout %.4f <= champion %.4f "
            "(McNemar p = %.3g)",
            champion.version,
            refit.holdout_acc,
            champion_acc,
            p_value,
        )


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version ``champion`` points to; None before the first promotion."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _same_holdout(name: str, champion: ModelVersion, refit: Refit, force: bool) -> bool:
    """Whether both were scored on the same holdout (data digest and split file); refuses to
    compare across holdouts unless ``force``."""
    same = (champion.tags.get("data_digest"), champion.tags.get("split_file")) == (
        refit.data_digest,
        refit.split_file,
    )
    if not same and not force:
        raise UserError(
            f"champion version {champion.version} of {name} was scored on another holdout "
            f"(data digest or split file differ); cannot compare. Use --force to replace it anyway"
        )
    return same


def _crown(client: MlflowClient, name: str, version: str, reason: str) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "decision", f"champion: {reason}")
    log.info("%s version %s is now %s: %s", name, version, CHAMPION, reason)


def _mcnemar(client: MlflowClient, champion: ModelVersion, refit: Refit) -> float:
    """Exact two-sided McNemar test on the holdout images both models predicted."""
    frames = []
    for run_id in (champion.tags.get("predictions_run_id", ""), refit.predictions_run_id):
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = client.download_artifacts(run_id, "test_predictions.csv", scratch)
            except (MlflowException, OSError):
                return float("nan")
            frames.append(
                pd.read_csv(
                    path, dtype=str, keep_default_na=False, encoding_errors="backslashreplace"
                ).set_index("path")
            )
    old, new = frames
    both = old.merge(new, left_index=True, right_index=True, suffixes=("_old", "_new"))
    old_right = both["predicted_old"] == both["label_old"]
    new_right = both["predicted_new"] == both["label_new"]
    only_old, only_new = int((old_right & ~new_right).sum()), int((new_right & ~old_right).sum())
    if only_old + only_new == 0:
        return 1.0
    return float(binomtest(min(only_old, only_new), only_old + only_new, 0.5).pvalue)
