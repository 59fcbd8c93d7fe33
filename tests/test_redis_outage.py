"""A Redis outage under traffic signs nobody out (issue 10, item 9).

A real redis-server of this test's own is stopped while clients keep
calling, then started again. With production's settings (revocation fails
closed, production's rate limits) a valid token is never answered 401: the
API says 503 with Retry-After, Socket.IO refuses the connection with a
message to try again, and calls succeed again seconds after Redis returns.
With revocation failing open (development) the outage serves 200s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio

from lms.app import create_app
from lms.config import load_config
from lms.db import Database
from lms.devservers import EmbeddedRedis
from tests.builders import PRODUCTION_ENV, bearer, login, make_user
from tests.conftest import Servers, make_config
from tests.polling import eventually

PROBLEM = "application/problem+json"
CLIENTS = 4


def production_rate_limits() -> dict[str, Any]:
    production = load_config("production", environ=PRODUCTION_ENV)
    assert production.auth.revocation_fail_closed
    return production.rate_limit.model_dump()


@pytest.fixture
async def own_redis(servers: Servers) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(servers.tmp / f"redis-outage-{time.monotonic_ns()}")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


@dataclass(frozen=True)
class Answer:
    sent: float  # when the request left (monotonic)
    at: float  # when its answer came
    status: int
    retry_after: str | None


@dataclass
class Traffic:
    """Clients calling GET /auth/me with a valid token until told to stop; every answer kept."""

    client: Any
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    running: bool = True

    async def loop(self) -> None:
        while self.running:
            sent = time.monotonic()
            response = await self.client.get("/api/v1/auth/me", headers=self.headers)
            body = await response.read()
            if response.status >= 400:
                assert response.content_type == PROBLEM, body
            self.answers.append(Answer(sent, time.monotonic(), response.status, response.headers.get("Retry-After")))
            await asyncio.sleep(0.01)

    def between(self, start: float, end: float) -> list[Answer]:
        """Calls sent after ``start`` and answered before ``end`` (one in flight at ``start`` may still say 200)."""
        return [a for a in self.answers if start < a.sent and a.at < end]

    async def until(self, status: int, after: float) -> float:
        """When the first call sent after ``after`` was answered with ``status``."""

        def first() -> float | None:
            return next((a.at for a in self.answers if a.status == status and a.sent > after), None)

        at = await eventually(first, timeout=20, what=f"a {status} (seen: {sorted({a.status for a in self.answers})})")
        return at


async def connect_refusal(url: str, token: str) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    refusal: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @client.on("connect_error")
    async def refused(data: Any) -> None:
        if not refusal.done():
            refusal.set_result(data)

    try:
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        pass
    finally:
        await client.shutdown()
    return await asyncio.wait_for(refusal, 10)


@pytest.mark.slow
async def test_a_redis_outage_answers_503_never_401_and_recovers_in_seconds(
    aiohttp_client: Any, servers: Servers, db: Database, own_redis: EmbeddedRedis
) -> None:
    config = make_config(
        servers,
        redis={"url": own_redis.url, "socket_timeout_seconds": 1},
        auth={"revocation_fail_closed": True},
        rate_limit=production_rate_limits(),
    )
    client = await aiohttp_client(create_app(config))
    user = await make_user(db)
    token = (await login(client, user["email"]))["access_token"]
    traffic = Traffic(client, bearer(token))
    loops = [asyncio.ensure_future(traffic.loop()) for _ in range(CLIENTS)]
    try:
        await traffic.until(200, after=0)
        await asyncio.to_thread(own_redis.stop)
        stopped_at = time.monotonic()
        first_503 = await traffic.until(503, after=stopped_at)

        refusal = await connect_refusal(str(client.make_url("")), token)
        assert "try again" in refusal["message"] and "unauthorized" not in refusal["message"].lower()
        assert refusal["data"]["code"] == "unavailable" and refusal["data"]["retry_after"] >= 1

        # Let every client be answered during the outage before Redis returns (the refusal above can
        # be quicker than one round of calls).
        await eventually(lambda: len(traffic.between(first_503, time.monotonic())) >= CLIENTS, what="calls answered")
        restarting_at = time.monotonic()
        await asyncio.to_thread(own_redis.start)
        back_at = time.monotonic()
        recovered = await traffic.until(200, after=back_at)
    finally:
        traffic.running = False
        await asyncio.gather(*loops)

    # A check made less than auth.principal_cache_seconds before the outage is
    # still reused (lms/auth/principals.py): 200s, then from the first 503 on
    # every answer is 503 until Redis returns.
    reuse = config.auth.principal_cache_seconds
    during = traffic.between(first_503, restarting_at)
    assert 401 not in {a.status for a in traffic.answers}
    assert len(during) >= CLIENTS and {a.status for a in during} == {503}
    assert all(a.retry_after is not None and int(a.retry_after) >= 1 for a in during)
    # "Seconds", widely: the clients reconnect on their next command (socket timeout 1 s), so this is
    # about 1 s; a client that waited for its health check (30 s) or a pool timeout would take far longer.
    assert recovered - back_at < 10, f"200 again only {recovered - back_at:.1f} s after Redis returned"
    assert first_503 - stopped_at < reuse + 10


@pytest.mark.slow
async def test_with_revocation_failing_open_the_outage_serves_200s(
    aiohttp_client: Any, servers: Servers, db: Database, own_redis: EmbeddedRedis
) -> None:
    config = make_config(
        servers,
        redis={"url": own_redis.url, "socket_timeout_seconds": 1},
        auth={"revocation_fail_closed": False},
        rate_limit=production_rate_limits(),
    )
    client = await aiohttp_client(create_app(config))
    user = await make_user(db)
    traffic = Traffic(client, bearer((await login(client, user["email"]))["access_token"]))
    loops = [asyncio.ensure_future(traffic.loop()) for _ in range(CLIENTS)]
    try:
        await traffic.until(200, after=0)
        await asyncio.to_thread(own_redis.stop)
        stopped_at = time.monotonic()
        # Calls keep being answered, and with 200: count a good number of them during the outage.
        await eventually(lambda: len(traffic.between(stopped_at, time.monotonic())) >= 40, what="40 calls answered")
        back_at = time.monotonic()
        await asyncio.to_thread(own_redis.start)

        # Readiness reports Redis ready again within seconds.
        async def ready() -> bool:
            return (await client.get("/api/v1/ready")).status == 200

        await eventually(ready, what="ready again after Redis returned", interval=0.1)
    finally:
        traffic.running = False
        await asyncio.gather(*loops)
    assert {a.status for a in traffic.between(stopped_at, back_at)} == {200}
