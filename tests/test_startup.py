"""Commands start without touching the network, and import only what they use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from trainer.tracking import tracking_uri

from .models import log_model, make_checkpoint

PROBE = """
import urllib.request
calls = []
def record(self, url, *args, **kwargs):
    calls.append(getattr(url, "full_url", url))
    raise OSError("no network in this test")
urllib.request.OpenerDirector.open = record
import trainer.data.transforms
print(len(calls), calls)
"""


def test_importing_the_transforms_makes_no_network_request() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 []"


# What each command must not import: libraries it does not use cost seconds at every start.
HEAVY = {"mlflow", "optuna", "plotly", "albumentations", "sklearn", "matplotlib", "pandas"}
IMPORTS_PROBE = """
import contextlib, io, json, sys
from importlib import import_module
main = import_module(sys.argv[1]).main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[2:])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "roots": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def imported_roots(module: str, *argv: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after ``module.main(argv)`` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, module, *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == 0, result.stderr
    return set(report["roots"])


@pytest.mark.parametrize("module", ["trainer.cli", "studies.cli"])
def test_help_imports_no_heavy_library(module: str) -> None:
    assert imported_roots(module, "--help") & (HEAVY | {"torch", "timm"}) == set()


def test_predicting_from_the_embedded_registry_imports_no_tracking_library(
    tmp_path: Path,
) -> None:
    uri = log_model(make_checkpoint(tmp_path / "model", 16))
    version = mlflow.register_model(uri, "startup")
    MlflowClient(tracking_uri()).set_registered_model_alias("startup", "champion", version.version)
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20, 3), 128, dtype=np.uint8)).save(image)
    out = str(tmp_path / "out.csv")
    argv = ["predict", "--model", "models:/startup@champion", str(image), "--out", out]
    assert imported_roots("trainer.cli", *argv) & HEAVY == set()
    checkpoint = ["predict", "--model", str(tmp_path / "model"), str(image), "--out", out]
    assert imported_roots("trainer.cli", *checkpoint) & HEAVY == set()
