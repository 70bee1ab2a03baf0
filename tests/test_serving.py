"""The served model on bad requests: HTTP 400 naming the row, no stack trace, no file probing.

MLflow's own scoring app (the one ``mlflow models serve`` runs) is served by uvicorn in a
thread on loopback, with the pyfunc model loaded as the server loads it.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from mlflow.pyfunc import scoring_server
from mlflow.utils import environment as mlflow_environment
from PIL import Image

from trainer.data import images

from .models import log_model, make_checkpoint
from .servers import free_port


@contextmanager
def scoring(model_uri: str, model_config: dict[str, Any] | None = None) -> Iterator[str]:
    """MLflow's scoring server for the model on a free loopback port; yields its URL."""
    model = mlflow.pyfunc.load_model(model_uri, model_config=model_config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(scoring_server.init(model), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def invoke(url: str, column: list[str]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[v] for v in column]}})
    request = urllib.request.Request(
        f"{url}/invocations", body.encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def png_base64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory, session_store: str) -> str:
    # Module fixtures run before the function-scoped isolated_tracking: point at the test store.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", session_store)
        return log_model(make_checkpoint(tmp_path_factory.mktemp("served") / "model", 16))


def assert_bad_request(answer: tuple[int, dict[str, Any]], *fragments: str) -> None:
    status, body = answer
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "stack_trace" not in body and "Traceback" not in json.dumps(body)
    for fragment in fragments:
        assert fragment in body["message"]


def test_bad_rows_are_400_naming_the_row(model_uri: str) -> None:
    not_an_image = base64.b64encode(b"certainly not a picture").decode("ascii")
    with scoring(model_uri) as url:
        status, body = invoke(url, [png_base64(1), png_base64(2)])
        assert status == 200 and len(body["predictions"]) == 2
        assert_bad_request(
            invoke(url, [png_base64(1), not_an_image]),
            "row 1: cannot decode (corrupt, truncated or not an image)",
        )
        assert_bad_request(invoke(url, ["@@not base64@@"]), "row 0: the image is not valid base64")
        assert_bad_request(invoke(url, []), "the request has no images")


def test_file_paths_are_refused_unless_opted_in(
    model_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = tmp_path / "server-side.png"
    picture.write_bytes(base64.b64decode(png_base64(3)))
    with scoring(model_uri) as url:
        for probe in (str(picture), str(tmp_path / "missing.png"), "/etc/passwd.jpg"):
            # The same answer whether or not the file exists: nothing about the server's files.
            assert_bad_request(invoke(url, [probe]), "row 0: file paths are not accepted")
    with scoring(model_uri, {"tracking.serve_paths": True}) as url:
        status, body = invoke(url, [str(picture)])
        assert status == 200 and len(body["predictions"]) == 1
        assert_bad_request(invoke(url, [str(tmp_path / "missing.png")]), "row 0: no image file")
    # What `mlflow models serve` reads when started with the opt-in in its environment.
    monkeypatch.setenv("MLFLOW_PYFUNC_INFERENCE_CONFIG", '{"tracking.serve_paths": true}')
    with scoring(model_uri) as url:
        status, body = invoke(url, [str(picture)])
        assert status == 200 and len(body["predictions"]) == 1


def test_large_jpegs_are_decoded_at_reduced_scale(
    model_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = np.random.default_rng(0).integers(0, 255, (1600, 2400, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", photo)
    assert ok
    flags: list[int] = []
    decode = images.cv2.imdecode

    def spy(buffer: np.ndarray, flag: int) -> Any:
        flags.append(flag)
        return decode(buffer, flag)

    monkeypatch.setattr(images.cv2, "imdecode", spy)
    model = mlflow.pyfunc.load_model(model_uri)
    flags.clear()
    model.predict(pd.DataFrame({"image": [base64.b64encode(encoded.tobytes()).decode()]}))
    # 1600 px at 1/8 is 200 px, still above the model's 16 px: libjpeg decodes 1/64 of the pixels.
    assert flags == [cv2.IMREAD_REDUCED_COLOR_8]


def test_logging_a_model_skips_checking_its_pins_against_their_own_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pins come from this environment, so MLflow's save-time check of them is skipped;
    the pins are still logged, and the check is back for whoever saves next."""
    checked: list[list[str]] = []
    monkeypatch.setattr(
        mlflow_environment, "warn_dependency_requirement_mismatches", checked.append
    )
    uri = log_model(make_checkpoint(tmp_path / "model", 16))
    assert checked == []
    assert mlflow_environment.warn_dependency_requirement_mismatches == checked.append
    pins = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().splitlines()
    assert f"torch=={version('torch')}" in pins
