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


def test_the_image_installs_the_built_wheel_not_the_source_tree() -> None:
    dockerfile = COMPOSE["x-lms"]["build"]["dockerfile_inline"]
    stages = dockerfile.split("\nFROM ")
    assert len(stages) == 2, "a wheel-building stage, then the image"
    build, image = stages
    assert "pip wheel" in build and "--wheel-dir /dist" in build
    assert "COPY --from=wheel /dist /dist" in image
    assert "pip install --no-cache-dir /dist/*.whl" in image
    # Nothing of the checkout reaches the image, and nothing is installed in editable mode.
    assert "COPY . ." not in image and "COPY ./" not in image
    for editable in (" -e ", "--editable", "pip install ."):
        assert editable not in dockerfile, editable
    assert "lms assets" in image and "USER nobody" in image


def test_long_running_services_have_health_checks() -> None:
    for name in ("postgres", "redis", "api-1", "api-2", "proxy", "minio", "mailpit"):
        assert "healthcheck" in COMPOSE["services"][name], name
