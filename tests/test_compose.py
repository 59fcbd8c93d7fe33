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


def test_prometheus_and_grafana_come_in_a_profile_provisioned_with_the_dashboard() -> None:
    root = Path(__file__).resolve().parent.parent
    services = COMPOSE["services"]
    for name in ("prometheus", "grafana", "jaeger"):
        assert services[name]["profiles"] == ["observability"], name
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["grafana"]["volumes"] if ":" in volume}
    assert mounts["/var/lib/grafana/dashboards"] == "./config/grafana/dashboards"
    assert (root / "config/grafana/dashboards/lms.json").is_file()
    provisioning = root / mounts["/etc/grafana/provisioning"].removeprefix("./")
    [datasource] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards/lms.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    # Prometheus scrapes every lms process where it serves /metrics.
    config_file = next(v for v in services["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro"))
    scrape = yaml.safe_load((root / config_file.split(":")[0].removeprefix("./")).read_text())["scrape_configs"]
    targets = {t for job in scrape for group in job["static_configs"] for t in group["targets"]}
    environment = COMPOSE["x-lms"]["environment"]
    port = environment["LMS_METRICS_WORKER_PORT"]
    assert environment["LMS_METRICS_SCHEDULER_PORT"] == port
    assert environment["LMS_METRICS_PROCESS_HOST"] == "0.0.0.0"  # noqa: S104 - inside its container
    assert targets == {"api-1:8000", "api-2:8000", f"worker:{port}", f"scheduler:{port}"}
