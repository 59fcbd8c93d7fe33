"""The scale-out shapes in the default run: one lean test each on a real Redis Cluster and PgBouncer.

The Sentinel failover has its own test (tests/test_redis_sentinel.py). The
whole Redis and database subsets run against these shapes on demand
(``LMS_TEST_REDIS_TOPOLOGY=cluster``, ``LMS_TEST_PGBOUNCER=1``; README
"Scaling out"); here each shape carries one pass through every use at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from lms.app import create_app
from lms.appkeys import REDIS
from lms.db import Database, StatementTimeout
from lms.jobqueue import JOBS
from lms.tables import lesson_progress, live_answers
from realtime.live import edge
from realtime.live.setup import LIVE
from tests.builders import bearer, login, make_course, make_enrollment, make_lesson, make_user
from tests.conftest import Instance, Servers, make_config
from tests.test_live_actor import live_game, principal
from tests.test_realtime import delivered_across
from tests.topologies import PgBouncer, RedisCluster

pytestmark = pytest.mark.slow


async def until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


# Set up before (so torn down after) the apps and processes that use them: they go first in a test's arguments.
@pytest.fixture
async def cluster(tmp_path: Path) -> Any:
    nodes = RedisCluster(tmp_path / "cluster")
    yield await asyncio.to_thread(nodes.start)
    await asyncio.to_thread(nodes.stop)


@pytest.fixture
async def pgbouncer(servers: Servers) -> Any:
    if servers.postgres is None:
        pytest.skip("needs the embedded PostgreSQL (LMS_TEST_DATABASE_URL is set)")
    # Next to PostgreSQL's socket: pgbouncer runs as that socket's owner, who cannot enter pytest's tmp_path.
    bouncer = PgBouncer(servers.tmp / f"pgbouncer-{uuid.uuid4().hex[:8]}", servers.postgres.url("lms_test"))
    yield await asyncio.to_thread(bouncer.start)
    await asyncio.to_thread(bouncer.stop)


async def test_rest_fanout_live_game_and_jobs_on_a_six_node_redis_cluster(
    cluster: str, aiohttp_client: Any, servers: Servers, db: Database, live: Any, start_lms: Any
) -> None:
    url = cluster
    config = make_config(servers, redis={"url": url}, live={"test_clock": False})
    a, b = [Instance(app, await aiohttp_client(app)) for app in (create_app(config), create_app(config))]
    start_lms("worker", redis={"url": url})
    for instance in (a, b):  # ready once each hears its own heartbeat through the cluster

        async def ready(i: Instance = instance) -> bool:
            return (await i.http.get("/api/v1/ready")).status == 200

        await until(ready, "readiness on a fresh cluster")

    # REST: sign-in (rate limits), the token check (revocation) and a sign-out seen by the other instance.
    user = await make_user(db)
    headers = bearer((await login(a.http, user["email"]))["access_token"])
    assert (await b.http.get("/api/v1/auth/me", headers=headers)).status == 200
    assert (await a.http.post("/api/v1/auth/logout", headers=headers)).status == 204

    async def refused_on_b() -> bool:
        return (await b.http.get("/api/v1/auth/me", headers=headers)).status == 401

    await until(refused_on_b, "the sign-out reaching the other instance", timeout=5)

    # Fan-out and presence across the instances.
    await delivered_across(a, b, live, db)

    # A live game: joins and answers on both instances, the owner on one, results in PostgreSQL.
    game = await live_game(db, questions=2, limit=120)
    await edge.host_session(a.app[LIVE], principal(game["teacher"]), game["id"])
    players = []
    for n in range(4):
        rt = (a if n % 2 else b).app[LIVE]
        joined = await edge.join_session(rt, None, pin=game["pin"], nickname=f"P{n}", player_token=None)
        players.append((rt, joined))
    teacher = str(game["teacher"]["id"])
    assert (await a.app[LIVE].command(game["id"], "start_session", {}, by=teacher))["ok"]
    for rt, player in players:
        await edge.submit_answer(rt, game["id"], player.player_id, 0, "b")
    assert (await b.app[LIVE].command(game["id"], "next", {}, by=teacher))["ok"]  # closes the question

    async def answers_stored() -> bool:
        async with db.connection() as conn:
            rows = await conn.fetch_val(select(func.count()).where(live_answers.c.session_id == game["id"]))
        return bool(rows == len(players))

    await until(answers_stored, "the question's answers in PostgreSQL")

    # Jobs: a probe through the streams to the worker and back.
    key = f"probe-{uuid.uuid4().hex[:8]}"
    await a.app[JOBS].enqueue("diagnostics.probe", key=key)

    async def probe_ran() -> bool:
        return bool(await a.app[REDIS].llen(f"{key}:finished"))

    await until(probe_ran, "the probe job running", timeout=60)


async def test_the_api_through_pgbouncer_in_transaction_pooling(
    pgbouncer: str, aiohttp_client: Any, servers: Servers, db: Database
) -> None:
    url = pgbouncer
    # More client connections than PgBouncer's 40 server connections: transactions share them.
    config = make_config(servers, database={"url": url, "transaction_pooler": True, "pool_max": 60})
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/api/v1/ready")).status == 200
    instructor = await make_user(db, role="instructor")
    course = await make_course(db, instructor)
    lesson = await make_lesson(db, course)
    students = [await make_user(db) for _ in range(20)]
    enrollments = [await make_enrollment(db, s, course) for s in students]
    tokens = [(await login(client, s["email"]))["access_token"] for s in students]

    async def report(token: str, enrollment: Any, percent: int) -> int:
        path = f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson['id']}/progress"
        body = {"completion_percentage": percent, "time_spent_seconds": 30}
        async with client.put(path, json=body, headers=bearer(token)) as response:
            return response.status

    statuses = await asyncio.gather(
        *[report(t, e, p) for p in (40, 100) for t, e in zip(tokens, enrollments, strict=True)]
    )
    assert statuses == [200] * (2 * len(students))
    async with db.connection() as conn:
        done = await conn.fetch_val(select(func.count()).where(lesson_progress.c.status == "completed"))
    assert done == len(students)
    # The course analytics statement, prepared on a direct connection, runs as plain SQL
    # here: a PREPAREd statement would stay on a server connection the next transaction
    # may not get (lms/prepared.py). Concurrent reads spread over PgBouncer's connections.
    instructor_token = (await login(client, instructor["email"]))["access_token"]

    async def figures() -> tuple[int, Any]:
        async with client.get(f"/api/v1/analytics/courses/{course['id']}", headers=bearer(instructor_token)) as r:
            return r.status, await r.json()

    for status, body in await asyncio.gather(*[figures() for _ in range(10)]):
        assert status == 200, body
        assert body["total_enrollments"] == len(students) and body["lessons"][0]["completed_count"] == len(students)
    # A transaction's statement_timeout holds through the pooler (SET LOCAL, no session setting).
    pooled = await Database.connect(url, min_size=1, max_size=1, statement_timeout_ms=200, transaction_pooler=True)
    try:
        async with pooled.connection() as conn:
            with pytest.raises(StatementTimeout):
                async with conn.transaction():
                    await conn.execute(text("SELECT pg_sleep(2)"))
            assert await conn.fetch_val("SELECT 1") == 1
    finally:
        await pooled.close()
