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


def test_tracking_server_requires_the_env_credentials(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert command(services["mlflow"])[:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    server_env = services["mlflow"]["environment"]
    assert server_env["MLFLOW_AUTH_ADMIN_USERNAME"] == "${MLFLOW_ADMIN_USER}"
    assert server_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD}"
    assert server_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "${MLFLOW_SECRET_KEY}"
    worker_env = services["worker"]["environment"]
    assert worker_env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_ADMIN_USER}"
    assert worker_env["MLFLOW_TRACKING_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD}"
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored  # the real secrets never get committed


@pytest.mark.slow
def test_auth_server_of_the_stack_refuses_anonymous_and_accepts_the_admin(
    digits_dir: Path, tmp_path: Path
) -> None:
    import json
    import os
    import urllib.error
    import urllib.request

    from .conftest import small_config
    from .servers import background_server, free_port, mlflow_server_command

    ini = (REPO / "docker" / "mlflow-auth.ini").read_text()
    local_ini = tmp_path / "auth.ini"
    local_ini.write_text(ini.replace("sqlite:////mlflow-auth/", f"sqlite:///{tmp_path}/"))
    env = env_example()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(local_ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": env["MLFLOW_ADMIN_USER"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": env["MLFLOW_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": env["MLFLOW_SECRET_KEY"],
    }
    server = mlflow_server_command(port, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art")
    server[2:2] = ["--app-name", "basic-auth"]
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(small_config(digits_dir, tmp_path / "out").to_dict()))
    fit = [sys.executable, "-m", "trainer", "fit", str(config)]
    with background_server(server, f"{url}/health", env=server_env):
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(search, timeout=10)
        assert refused.value.code == 401
        anonymous = subprocess.run(
            fit,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "MLFLOW_TRACKING_URI": url},
        )
        assert anonymous.returncode != 0 and "Traceback" not in anonymous.stderr
        assert "401" in anonymous.stderr or "Unauthorized" in anonymous.stderr
        admin = {
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_TRACKING_USERNAME": env["MLFLOW_ADMIN_USER"],
            "MLFLOW_TRACKING_PASSWORD": env["MLFLOW_ADMIN_PASSWORD"],
        }
        tracked = subprocess.run(
            fit, capture_output=True, text=True, timeout=300, env={**os.environ, **admin}
        )
        assert tracked.returncode == 0, tracked.stderr
        request = urllib.request.Request(search)
        import base64

        token = base64.b64encode(
            f"{env['MLFLOW_ADMIN_USER']}:{env['MLFLOW_ADMIN_PASSWORD']}".encode()
        ).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {e["name"] for e in json.loads(response.read())["experiments"]}
        assert "digits-demo" in names
