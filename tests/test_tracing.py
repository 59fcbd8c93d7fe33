"""OpenTelemetry: one trace from an HTTP request through its SQL and Redis calls to the job it kicks.

Real ``lms serve`` and ``lms worker`` processes export over OTLP/HTTP to a
local fake collector (tests/fake_telemetry.py). Tracing is per process (the
instrumentations patch the libraries), so it is never turned on in the
test process itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from lms.config import load_config
from lms.devservers import free_port
from lms.telemetry.tracing import setup_tracing, tracing_enabled
from tests.conftest import LmsProcess, Servers, SmtpServer, lms_environment
from tests.fake_telemetry import FakeCollector, Span, wait_until

SERVER, CONSUMER = 2, 5  # OTLP SpanKind values
OK_STATUS, ERROR_STATUS = 0, 2


@pytest.fixture
async def collector(aiohttp_server: Any) -> FakeCollector:
    fake = FakeCollector()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def traced(servers: Servers, smtp_server: SmtpServer, collector: FakeCollector) -> Iterator[tuple[str, list[Any]]]:
    """`lms serve` and `lms worker` exporting to the collector; the server's URL."""
    env = lms_environment(servers, otel={"exporter_otlp_endpoint": collector.url}, smtp=smtp_server.settings())
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # export batches quickly
    port = free_port()
    processes = [
        LmsProcess(["serve", "--host", "127.0.0.1", "--port", str(port), "--no-banner"], env),
        LmsProcess(["worker"], env),
    ]
    try:
        processes[0].wait_for_output("serving on", timeout=60)
        processes[1].wait_for_output("worker ready", timeout=60)
        yield f"http://127.0.0.1:{port}", processes
    finally:
        for process in processes:
            process.stop()
            process.close()


def db_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.attributes.get("db.system") == "postgresql"]


def redis_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.attributes.get("db.system") == "redis"]


@pytest.mark.slow
async def test_one_trace_runs_from_the_request_through_sql_and_redis_to_the_job_and_its_spans(
    traced: tuple[str, list[Any]], collector: FakeCollector, smtp_server: SmtpServer
) -> None:
    url, _ = traced
    async with aiohttp.ClientSession() as http:
        body = {"email": "lin@example.com", "password": "a long enough passphrase", "full_name": "Lin"}
        async with http.post(f"{url}/api/v1/auth/register", json=body) as response:
            assert response.status == 201, await response.text()
        async with http.get(f"{url}/api/v1/health") as response:  # excluded: starts no trace
            assert response.status == 200

    def request_span() -> Span | None:
        return next((s for s in collector.spans if s.kind == SERVER and "register" in s.name), None)

    def jobs_of(root: Span) -> list[Span]:
        return [s for s in collector.trace(root.trace_id) if s.kind == CONSUMER and s.name == "task send_email"]

    def complete() -> bool:
        root = request_span()
        if root is None or len(jobs_of(root)) < 2:
            return False
        return all(db_spans(collector.descendants(job)) for job in jobs_of(root))

    await wait_until(complete, timeout=60, what="the request's trace with both email jobs and their SQL")
    root = request_span()
    assert root is not None
    assert root.name == "POST /api/v1/auth/register" and root.service == "lms-serve"
    assert root.attributes["http.route"] == "/api/v1/auth/register" and root.parent_id == ""
    under_request = collector.descendants(root)
    assert db_spans(under_request), "the request's SQL"
    assert {s.attributes.get("db.statement", "").split()[0] for s in db_spans(under_request)} >= {"INSERT"}
    kicks = [s for s in redis_spans(under_request) if s.name == "XADD"]
    assert len(kicks) == 2, "the two emails kicked to the stream, in the request's trace"

    jobs = jobs_of(root)
    assert {j.service for j in jobs} == {"lms-worker"}
    assert {j.parent_id for j in jobs} <= {s.span_id for s in [root, *under_request]}
    assert all(j.attributes["messaging.destination.name"] == "emails" for j in jobs)
    assert all(j.status == OK_STATUS for j in jobs)
    for job in jobs:
        inside = collector.descendants(job)
        assert db_spans(inside) and all(s.service == "lms-worker" for s in inside)
    smtp_server.catcher.wait_for(2)
    # Parameters never reach the spans: the address is in no attribute.
    assert all("lin@example.com" not in str(s.attributes) for s in collector.trace(root.trace_id))
    # Health checks and the workers' polling started no trace of their own.
    assert not [s for s in collector.spans if "health" in s.name]
    roots = [s for s in collector.spans if s.parent_id == ""]
    assert all(s.kind in (SERVER, CONSUMER) for s in roots), {s.name for s in roots}


@pytest.mark.no_services
def test_tracing_is_off_without_an_endpoint() -> None:
    assert setup_tracing(load_config("test", environ={}), "serve") is False
    assert not tracing_enabled()


@pytest.mark.no_services
@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"LMS_OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_the_standard_variables_turn_tracing_on_too(environ: dict[str, str], enabled: bool) -> None:
    assert load_config("test", environ=environ).otel.enabled is enabled
