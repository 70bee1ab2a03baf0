"""Servers started by tests on loopback ports, waited for, and always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_tool(name: str) -> str:
    """A console script installed beside this Python (mlflow, optuna-dashboard, ...)."""
    return str(Path(sys.executable).with_name(name))


def mlflow_server_command(port: int, backend: str, artifacts: Path) -> list[str]:
    """`mlflow server` on 127.0.0.1:port with ``backend`` and served artifacts in a folder."""
    return [
        venv_tool("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
    ]


@contextmanager
def background_server(
    command: list[str], ready_url: str, env: dict[str, str] | None = None, timeout: float = 180
) -> Iterator[subprocess.Popen[str]]:
    """Start ``command`` in its own process group, wait until ``ready_url`` answers, and stop
    the whole group afterwards (servers such as uvicorn fork workers)."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(ready_url):
            if process.poll() is not None or time.monotonic() > deadline:
                detail = (
                    process.stderr.read()
                    if process.poll() is not None and process.stderr
                    else "timed out"
                )
                raise RuntimeError(f"{command[0]} did not start: {detail}")
            time.sleep(0.5)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
