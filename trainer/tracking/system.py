"""System metrics of a training run: CPU, memory, disk, network (and GPU with NVML)."""

from __future__ import annotations

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from trainer.config import TrackingConfig
from trainer.interrupts import shielded
from trainer.tracking.store import is_database_uri, quiet


class SystemMetrics:
    """MLflow's sampler thread, started for each fold's run and stopped before it ends."""

    def __init__(self, settings: TrackingConfig, tracking_uri: str) -> None:
        self.enabled = settings.system_metrics
        self.seconds = settings.system_metrics_seconds
        self.tracking_uri = tracking_uri
        self.monitor: SystemMetricsMonitor | None = None

    def start(self, run_id: str) -> None:
        """Sample into ``run_id`` every ``system_metrics_seconds`` (if enabled)."""
        if not self.enabled:
            return
        with quiet("mlflow.system_metrics"):  # "GPU monitor unavailable" on every CPU fold
            self.monitor = SystemMetricsMonitor(
                run_id, sampling_interval=self.seconds, tracking_uri=self.tracking_uri
            )
            self.monitor.start()

    def stop(self) -> None:
        """Stop the sampler thread and flush what it holds (before the run ends)."""
        if self.monitor is not None:
            # finishing writes the last samples: like a client call, not cut short by a signal
            with quiet("mlflow.system_metrics"), shielded(is_database_uri(self.tracking_uri)):
                self.monitor.finish()
            self.monitor = None
