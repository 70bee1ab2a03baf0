"""docker-compose.yml checked against the code: Docker does not run here, so no `docker compose
config`; instead its services, ports, variables and commands are read and validated."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from studies.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "minio", "create-bucket", "mlflow", "optuna-dashboard", "worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Docker Compose variable substitution: ${VAR}, ${VAR:-default}, $$ -> $."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), text)
    text = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], text)
    return text.replace("$$", "$")


def command(service: dict[str, Any]) -> list[str]:
    return shlex.split(interpolate(" ".join(service["command"].split()), env_example()))


def test_services_images_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert all("image" in s or "build" in s for s in services.values())
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")
    used = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "$"))
    }
    assert used <= set(compose["volumes"])
    for mount in (
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if v.startswith("./")
    ):
        assert (REPO / mount).exists(), mount


def test_every_port_is_bound_to_localhost(compose: dict[str, Any]) -> None:
    ports = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def test_every_variable_comes_from_the_env_example(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    required = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    assert required <= set(env_example()), required - set(env_example())
    secrets = [k for k in env_example() if "PASSWORD" in k]
    assert secrets and all(env_example()[k].startswith("change-me") for k in secrets)
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text()


def test_workers_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "minio", "mlflow"):
        assert "healthcheck" in services[name], name
    assert services["worker"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
    }
    assert (
        services["mlflow"]["depends_on"]["create-bucket"]["condition"]
        == "service_completed_successfully"
    )


def test_worker_command_is_a_valid_studies_run(compose: dict[str, Any]) -> None:
    args = command(compose["services"]["worker"])
    assert args[:2] == ["studies", "run"]
    parsed = build_parser().parse_args(args[1:])
    assert (REPO / parsed.study).is_file()
    assert parsed.storage.startswith("postgresql://") and parsed.storage.endswith(
        "@postgres:5432/optuna"
    )
    assert (
        compose["services"]["worker"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    )


@pytest.mark.parametrize(
    ("service", "program"),
    [("mlflow", ["mlflow", "server"]), ("optuna-dashboard", ["optuna-dashboard"])],
)
def test_server_commands_use_real_options(
    compose: dict[str, Any], service: str, program: list[str]
) -> None:
    args = command(compose["services"][service])
    assert args[: len(program)] == program
    executable = Path(sys.executable).with_name(program[0])
    usage = subprocess.run(
        [str(executable), *program[1:], "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    for option in (a for a in args if a.startswith("--")):
        assert option in usage, f"{service}: {option} is not an option of {' '.join(program)}"


def test_dockerfile_copies_what_exists() -> None:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
