"""Sentry: an unexpected error is one event, scrubbed and tagged; a 4xx is none (a local fake Sentry receives).

The web app's events are taken in this process (the route that fails
unexpectedly is added by the test, as in test_errors.py); the worker's from
a real ``lms worker`` with ``LMS_SENTRY_DSN`` set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sentry_sdk
from aiohttp import web

from jobs.broker import build_producer
from jobs.queue import BrokerJobQueue
from jobs.tasks import all_specs
from lms import __version__
from lms.app import create_app
from lms.auth.guards import authenticate
from lms.telemetry.errors import scrub, setup_error_tracking, shutdown_error_tracking
from tests.builders import bearer, login, make_user
from tests.conftest import LmsProcess, Servers, make_config
from tests.fake_telemetry import FakeSentry, wait_until

SECRET_PASSWORD = "correct horse battery staple"


@pytest.fixture
async def fake_sentry(aiohttp_server: Any) -> FakeSentry:
    fake = FakeSentry()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def tracked(fake_sentry: FakeSentry) -> AsyncIterator[Callable[[Any], bool]]:
    """Start error tracking for this process with a config; stopped (and flushed) after the test."""
    yield lambda config: setup_error_tracking(config, "serve")
    await asyncio.get_running_loop().run_in_executor(None, shutdown_error_tracking)


async def flush() -> None:
    # The SDK sends from its own thread; the fake answers on this loop, which must keep running.
    await asyncio.get_running_loop().run_in_executor(None, sentry_sdk.flush)


async def fails_unexpectedly(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    email = principal.user["email"]
    token = request.headers["Authorization"].removeprefix("Bearer ")
    raise RuntimeError(f"could not mail {email} with token {token}?token={token}&password={SECRET_PASSWORD}")


async def test_an_unexpected_error_is_one_scrubbed_event_tagged_with_request_and_user_and_4xx_are_none(
    aiohttp_client: Any, servers: Servers, fake_sentry: FakeSentry, tracked: Callable[[Any], bool], db: Any
) -> None:
    config = make_config(servers, sentry={"dsn": fake_sentry.dsn})
    assert tracked(config)
    app = create_app(config)
    app.router.add_post("/api/v1/fails", fails_unexpectedly)
    client = await aiohttp_client(app)
    user = await make_user(db, email="ada@example.com")
    token = (await login(client, user["email"]))["access_token"]

    # Client mistakes: 401, 404, 405, 415, 422. None of them is an event.
    assert (await client.get("/api/v1/auth/me", headers=bearer("not-a-token"))).status == 401
    assert (await client.get("/api/v1/nothing-here")).status == 404
    assert (await client.delete("/api/v1/auth/me")).status == 405
    assert (await client.post("/api/v1/auth/login", data="x", headers={"Content-Type": "text/plain"})).status == 415
    assert (await client.post("/api/v1/auth/login", json={"email": "nope"})).status == 422

    response = await client.post(
        "/api/v1/fails",
        json={"password": SECRET_PASSWORD, "email": user["email"]},
        headers={**bearer(token), "X-Request-ID": "req-sentry-1", "Cookie": "session=abc"},
    )
    assert response.status == 500
    await flush()

    [event] = fake_sentry.events
    assert event["level"] == "error"
    assert event["environment"] == "test" and event["release"] == f"lms@{__version__}"
    assert event["tags"]["request_id"] == "req-sentry-1" and event["tags"]["process"] == "serve"
    assert event["user"] == {"id": str(user["id"])}
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError" and exception["stacktrace"]["frames"]
    assert event["request"]["method"] == "POST" and event["request"]["url"].endswith("/api/v1/fails")
    text = json.dumps(event)
    for secret in (SECRET_PASSWORD, user["email"], token, "session=abc"):
        assert secret not in text, secret
    assert "[email]" in exception["value"] and "[token]" in exception["value"]
    assert "password" not in str(event["request"].get("data", ""))  # bodies are never sent
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])  # nor local variables


async def test_without_a_dsn_nothing_is_started(servers: Servers) -> None:
    assert setup_error_tracking(make_config(servers), "serve") is False
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.no_services
def test_scrubbing_blanks_keys_and_text_but_keeps_the_shape() -> None:
    event = {
        "message": "reset sent to bob@example.org, Authorization: Bearer abc.def.ghi",
        "extra": {"Password": "x", "refresh-token": "y", "to_address": "z@q.io", "count": 3},
        "breadcrumbs": {"values": [{"message": "GET /verify-email?token=s3cr3t&lang=en"}]},
        "request": {"headers": {"Authorization": "Bearer t", "X-Request-ID": "r1"}},
        "list": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", None, 1.5],
    }
    clean = scrub(event)
    assert clean["message"] == "reset sent to [email], Authorization: Bearer [token]"
    filtered = "[Filtered]"
    assert clean["extra"] == {"Password": filtered, "refresh-token": filtered, "to_address": filtered, "count": 3}
    assert clean["breadcrumbs"]["values"][0]["message"] == "GET /verify-email?token=[Filtered]&lang=en"
    assert clean["request"]["headers"] == {"Authorization": "[Filtered]", "X-Request-ID": "r1"}
    assert clean["list"] == ["[token]", None, 1.5]


@pytest.mark.slow
async def test_a_task_dead_lettered_in_a_worker_is_an_event_with_its_job_id(
    servers: Servers, fake_sentry: FakeSentry, start_lms: Callable[..., LmsProcess]
) -> None:
    start_lms("worker", sentry={"dsn": fake_sentry.dsn})
    config = make_config(servers)
    producer = build_producer(config)
    await producer.startup()
    try:
        task_id = await BrokerJobQueue(producer, all_specs()).kick(
            "send_email", template="no-such-template", to="grace@example.com", context={}, message_id="m-sentry"
        )
    finally:
        await producer.shutdown()

    await wait_until(lambda: bool(fake_sentry.events), what="an event from the worker")
    event = fake_sentry.events[0]  # Taskiq's own line about the failed attempt is no event
    assert event["tags"]["job_id"] == task_id and event["tags"]["task"] == "send_email"
    assert event["tags"]["process"] == "worker" and event["environment"] == "test"
    assert "dead-lettered" in event["logentry"]["message"]
    [exception] = event["exception"]["values"]
    assert exception["type"] == "TemplateError"
    assert "grace@example.com" not in json.dumps(event)
