"""docker-compose.yml cannot run here (no Docker engine): check its shape instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lms.cli import COMMANDS

pytestmark = pytest.mark.no_services
COMPOSE = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())


def test_production_shape() -> None:
    services = COMPOSE["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert {"api-1", "api-2", "proxy", "worker", "scheduler", "minio", "mailpit", "migrate"} <= set(services)
    assert "Upgrade $$http_upgrade" in COMPOSE["configs"]["nginx"]["content"]


def test_every_lms_command_exists_in_the_cli() -> None:
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if command and command[0] == "lms":
            assert command[1] in COMMANDS, f"{name} runs `lms {command[1]}`, which the CLI lacks"


def test_long_running_services_have_health_checks() -> None:
    for name in ("postgres", "redis", "api-1", "api-2", "proxy", "minio", "mailpit"):
        assert "healthcheck" in COMPOSE["services"][name], name
