"""Optuna studies over trainer configs, tracked in MLflow."""
