"""docker-compose.yml cannot run here (no Docker engine), so check it stays true to the code."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from services import cli, settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open() as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def project_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("build")}


def test_compose_parses_and_has_the_stack() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["redis"]["image"].startswith("redis:")
    assert "prometheus" in services
    assert project_services(), "no fraudstream service containers"


@pytest.mark.parametrize("name", sorted(project_services()))
def test_every_container_command_exists_in_the_cli(name: str) -> None:
    command = project_services()[name]["command"]
    assert command[0] in cli.COMMANDS, f"{name}: `fraudstream {command[0]}` does not exist"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0, f"{name}: `fraudstream {' '.join(command)} --help` failed"


def test_every_environment_variable_is_a_known_setting() -> None:
    known = settings.known_env_names()
    for name, svc in project_services().items():
        for key in svc.get("environment", {}):
            if key.startswith(settings.ENV_PREFIX):
                assert key in known, f"{name}: {key} is not a setting of any command"


def test_prometheus_scrapes_every_service_that_serves_metrics() -> None:
    with (ROOT / "deploy" / "prometheus" / "prometheus.yml").open() as fh:
        prom = yaml.safe_load(fh)
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name, svc in project_services().items():
        port = svc.get("environment", {}).get("FRAUDSTREAM_METRICS_PORT")
        if port:
            assert f"{name}:{port}" in targets
