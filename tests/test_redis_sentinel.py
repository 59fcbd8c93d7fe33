"""Redis Sentinel: the master is killed during a live game, REST traffic and payment webhooks.

A real group (a master, two replicas, three sentinels; tests/topologies.py) and
two instances of the app, a real ``lms worker`` process. The master is
killed (SIGKILL, nothing saved) while players answer, clients call the API
and a gateway delivers webhooks. After the sentinels promote the replica
the platform recovers by itself: readiness goes 503 then 200 on both
instances, the fan-out reaches the other instance's clients again, the
worker takes jobs from the streams again, the live session goes on under
an owner; every acknowledged answer is in the stored results and every
acknowledged webhook's payment completes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jobs import admin
from lms.app import create_app
from lms.appkeys import REDIS
from lms.db import Database
from lms.jobqueue import JOBS
from lms.tables import live_answers, payments
from realtime.live import edge
from realtime.live.setup import LIVE
from realtime.live.store import LiveError
from tests.builders import bearer, login, make_user
from tests.conftest import Instance, Servers, make_config
from tests.fake_gateways import Gateways
from tests.test_live_actor import live_game, principal
from tests.test_payments import checkout, paid_course
from tests.test_realtime import delivered_across
from tests.topologies import RedisSentinel

pytestmark = pytest.mark.slow

PLAYERS = 24
PAYMENTS = 6


@pytest.fixture
async def sentinel(tmp_path: Path) -> Any:
    group = RedisSentinel(tmp_path / "sentinel")
    await asyncio.to_thread(group.start)
    yield group
    await asyncio.to_thread(group.stop)


async def ready_status(instance: Instance) -> int:
    return int((await instance.http.get("/api/v1/ready")).status)


async def test_the_master_dies_mid_game_and_the_platform_recovers_losing_nothing_acknowledged(
    aiohttp_client: Any, servers: Servers, db: Database, live: Any, sentinel: RedisSentinel, gateways: Gateways,
    start_lms: Any,
) -> None:  # fmt: skip
    settings: dict[str, Any] = {
        "redis": {"url": sentinel.url, "socket_timeout_seconds": 1},
        # Answers are acknowledged once the replica holds them (Redis WAIT): the failover cannot lose them.
        "live": {"answer_wait_replicas": 1, "test_clock": False},
        "payments": gateways.settings(),
    }
    config = make_config(servers, **settings)
    a, b = [Instance(app, await aiohttp_client(app)) for app in (create_app(config), create_app(config))]
    worker = start_lms("worker", redis={"url": sentinel.url}, payments=gateways.settings())

    # Before: a game in its first question, pending payments, a signed-in client.
    game = await live_game(db, questions=2, limit=120)
    await edge.host_session(a.app[LIVE], principal(game["teacher"]), game["id"])
    players = []
    for n in range(PLAYERS):
        rt = (a if n % 2 else b).app[LIVE]
        players.append((rt, await edge.join_session(rt, None, pin=game["pin"], nickname=f"P{n}", player_token=None)))
    assert (await a.app[LIVE].command(game["id"], "start_session", {}, by=str(game["teacher"]["id"])))["ok"]
    course = await paid_course(db)
    buyers = [await make_user(db) for _ in range(PAYMENTS)]
    sessions = []
    for buyer in buyers:
        started = await checkout(a, bearer((await login(a.http, buyer["email"]))["access_token"]), course, "stripe")
        sessions.append(
            (started["payment_id"], gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"])
        )
    user = await make_user(db)
    headers = bearer((await login(b.http, user["email"]))["access_token"])

    acknowledged: set[str] = set()
    refusals: list[str] = []  # what the retried answers met, for the failure message
    statuses: list[int] = []
    readiness: dict[str, list[int]] = {"a": [], "b": []}
    webhook_answers: list[int] = []
    running = True

    async def answer(rt: Any, player: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:  # until acknowledged: a refusal during the failover is retried, as a client would
            try:
                await edge.submit_answer(rt, game["id"], player.player_id, 0, "b")
                acknowledged.add(player.player_id)
                return
            except LiveError as err:
                if err.code == "already_answered":  # an earlier try was recorded
                    acknowledged.add(player.player_id)
                    return
                refusals.append(f"{err.code}: {err}")
            except Exception as err:  # Redis unreachable mid-failover: retry
                refusals.append(repr(err))
            await asyncio.sleep(0.2)

    async def rest_traffic() -> None:
        while running:
            async with b.http.get("/api/v1/auth/me", headers=headers) as response:
                statuses.append(response.status)
            for name, instance in (("a", a), ("b", b)):
                readiness[name].append(await ready_status(instance))
            await asyncio.sleep(0.05)

    async def webhooks(delay: float) -> None:
        await asyncio.sleep(delay)
        for _, session_id in sessions:
            event = gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(session_id))
            status, _ = await gateways.stripe.send(a.url, event)
            webhook_answers.append(status)

    traffic = asyncio.ensure_future(rest_traffic())
    answering = [asyncio.ensure_future(answer(rt, p, n * 0.15)) for n, (rt, p) in enumerate(players)]
    hooks = asyncio.ensure_future(webhooks(1.0))
    try:
        deadline = time.monotonic() + 30  # kill it mid-game: some answers acknowledged, others still to come
        while len(acknowledged) < 4:
            assert time.monotonic() < deadline, refusals[-5:]
            await asyncio.sleep(0.05)
        assert readiness["a"][:1] == readiness["b"][:1] == [200]
        old_master = sentinel.current_master_port()
        assert sentinel.master is not None
        await asyncio.to_thread(sentinel.master.kill)
        killed_at = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*answering, hooks), 90)
        except TimeoutError:
            raise AssertionError(f"answers not acknowledged: {refusals[-5:]}, webhooks {webhook_answers}") from None

        async def both_ready() -> bool:
            return await ready_status(a) == 200 and await ready_status(b) == 200

        deadline = time.monotonic() + 90
        while not await both_ready():
            assert time.monotonic() < deadline, "the instances did not become ready after the failover"
            await asyncio.sleep(0.2)
        running = False
        await traffic
        assert sentinel.current_master_port() != old_master  # the replica was promoted
        recovered_in = time.monotonic() - killed_at

        # Readiness said so, then recovered; REST answered 503 (retry), never 401, and is 200 again.
        assert 503 in readiness["a"] + readiness["b"], readiness
        assert 401 not in statuses and statuses[-1] == 200
        assert (await b.http.get("/api/v1/auth/me", headers=headers)).status == 200
        # Every webhook was acknowledged (stored in PostgreSQL whatever Redis did).
        assert webhook_answers == [200] * PAYMENTS

        # The fan-out listener is back: an event raised on one instance reaches the other's clients.
        await delivered_across(a, b, live, db)
        # The worker reads the streams again: a probe kicked now runs.
        key = f"probe-{uuid.uuid4().hex[:8]}"
        await a.app[JOBS].enqueue("diagnostics.probe", key=key)
        deadline = time.monotonic() + 60
        while not await a.app[REDIS].llen(f"{key}:finished"):
            assert time.monotonic() < deadline, worker.output[-3000:]
            await asyncio.sleep(0.2)

        # The session has an owner again and goes on: its results hold every acknowledged answer.
        teacher = str(game["teacher"]["id"])
        for _ in range(3):  # close the question, show the leaderboard, end
            deadline = time.monotonic() + 30
            while not (await b.app[LIVE].command(game["id"], "next", {}, by=teacher))["ok"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert (await b.app[LIVE].command(game["id"], "end_session", {}, by=teacher)).get("error", {}).get("code") in (
            None, "session_ended",
        )  # fmt: skip
        assert len(acknowledged) == PLAYERS
        async with db.connection() as conn:
            rows = await conn.fetch_all(
                select(live_answers.c.player_id).where(
                    live_answers.c.session_id == game["id"], live_answers.c.question_index == 0
                )
            )
        stored = {str(r["player_id"]) for r in rows}
        assert acknowledged <= stored

        # Every acknowledged webhook's payment completes (its job, or the reconciliation, settles it).
        await admin.run_once(config, "reconcile_payments", {})
        async with db.connection() as conn:
            done = await conn.fetch_all(select(payments.c.id, payments.c.status))
        assert {str(r["id"]): r["status"] for r in done} == {pid: "completed" for pid, _ in sessions}
        assert recovered_in < 60
    finally:  # a failed check leaves no task running into the teardown
        running = False
        for task in (traffic, hooks, *answering):
            task.cancel()
        await asyncio.gather(traffic, hooks, *answering, return_exceptions=True)
