"""Where a run came from: code version, package versions, machine, data; and what differs."""

from __future__ import annotations

import functools
import logging
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.callbacks import FitInfo

log = logging.getLogger(__name__)

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


@functools.cache  # the modules this process imported cannot change under it (~15 ms a call)
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


def run_tags(info: FitInfo) -> dict[str, str]:
    """Tags of a fit's parent run: code, packages, machine, data."""
    samples = info.samples
    tags = {f"git.{k}": v for k, v in git_state().items()}
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    tags.update(
        {
            "host": host(),
            "device": info.execution.describe(),
            "data.root": str(samples.root),
            "data.digest": info.data_digest,
            "data.n_images": str(len(samples)),
            "data.n_classes": str(len(samples.class_names)),
            "data.class_names": ",".join(samples.class_names),
            "data.split_file": info.splits.path.name,
            "data.skipped_images": str(len(info.skipped)),
            "run_dir": str(info.run_dir),
        }
    )
    return tags


def warn_if_different(original: dict[str, str], current: dict[str, str]) -> None:
    """Warn about code, data and package differences between a run and its reproduction."""
    keys = [k for k in original if k.startswith(("git.", "version.")) or k == "data.digest"]
    for key in keys:
        if original.get(key) != current.get(key):
            log.warning(
                "reproduction differs from the original run in %s: %s -> %s",
                key,
                original.get(key),
                current.get(key),
            )


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model: the packages that decide its numbers."""
    versions = package_versions()
    return [f"{name}=={version}" for name, version in versions.items() if name != "python"] + [
        "safetensors",
        "pydantic",
        "PyYAML",
        "pandas",
    ]
