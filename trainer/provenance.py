"""Where a run came from: code version, package versions, machine."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "albumentations",
    "opencv-python-headless",
    "numpy",
    "scikit-learn",
    "mlflow",
    "optuna",
)


def git_state(directory: Path | None = None) -> dict[str, str]:
    """``commit`` and ``dirty`` of the git checkout holding this package ("unknown" outside one)."""
    where = directory or Path(__file__).resolve().parent
    try:
        commit = _git(where, "rev-parse", "HEAD")
        dirty = bool(_git(where, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit, "dirty": str(dirty).lower()}


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host() -> str:
    """This machine's host name."""
    return socket.gethostname()


def _git(where: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return result.stdout.strip()
