"""At-least-once delivery with real `lms worker` processes, a real Redis and a real SMTP server.

Tasks observe themselves through the ``diagnostics.probe`` task: each run
pushes a record (pid, consumer) to ``<key>:started`` / ``<key>:finished`` and,
with ``hold``, waits for ``<key>:release``. Waits are bounded; the bounds come
from the settings under test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from jobs.broker import build_producer, stream_name
from jobs.queue import BrokerJobQueue
from jobs.tasks import all_specs
from lms.config import Settings
from lms.db import Database, Row
from lms.tables import email_log, job_dead_letters
from tests.conftest import (
    LmsProcess,
    Servers,
    SmtpCatcher,
    SmtpServer,
    lms_environment,
    make_config,
    running_smtp_server,
)
from tests.polling import eventually

pytestmark = pytest.mark.slow

Kick = Callable[..., Coroutine[Any, Any, str]]


@pytest.fixture
async def kick(config: Settings) -> AsyncIterator[Kick]:
    producer = build_producer(config)
    await producer.startup()
    yield BrokerJobQueue(producer, all_specs()).kick
    await producer.shutdown()


async def runs(redis: aioredis.Redis, key: str, phase: str = "started") -> list[dict[str, Any]]:
    return [json.loads(item) for item in await redis.lrange(f"{key}:{phase}", 0, -1)]


async def wait_runs(
    redis: aioredis.Redis, key: str, count: int, timeout: float, phase: str = "started"
) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        seen = await runs(redis, key, phase)
        return seen if len(seen) >= count else []

    return await eventually(found, timeout=timeout, what=f"{key}: {count} {phase} run(s)")


async def pending_count(redis: aioredis.Redis, config: Settings, queue: str) -> int:
    summary = await redis.xpending(stream_name(config, queue), "workers")  # type: ignore[arg-type]
    return int(summary["pending"])


def by_pid(workers: list[LmsProcess], pid: int) -> LmsProcess:
    return next(w for w in workers if w.pid == pid)


async def test_a_task_of_a_killed_worker_runs_again_on_another_worker_without_new_traffic(
    start_lms: Callable[..., LmsProcess], kick: Kick, redis: aioredis.Redis, config: Settings
) -> None:
    idle = 2
    settings = {"jobs": {"idle_redelivery_seconds": idle}}
    workers = [start_lms("worker", "--queues", "default", **settings) for _ in range(2)]
    await kick("diagnostics.probe", key="k", hold=True)
    [first] = await wait_runs(redis, "k", 1, timeout=10)
    victim = by_pid(workers, first["pid"])
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(5)

    # Nothing else is kicked: the survivor's reclaim timer alone brings it back (after about `idle`;
    # taskiq-redis's own reclaim, skipped while reads return nothing, would never).
    runs_now = await wait_runs(redis, "k", 2, timeout=idle + 20)
    second = runs_now[1]
    assert second["pid"] != first["pid"] and second["task_id"] == first["task_id"]

    await redis.set("k:release", b"1")
    [finished] = await wait_runs(redis, "k", 1, timeout=10, phase="finished")
    assert finished["pid"] == second["pid"]

    async def settled() -> bool:
        return await pending_count(redis, config, "default") == 0

    await eventually(settled, what="nothing pending")
    assert len(await runs(redis, "k")) == 2


async def test_sigterm_stops_taking_tasks_and_lets_the_running_one_finish(
    start_lms: Callable[..., LmsProcess], kick: Kick, redis: aioredis.Redis
) -> None:
    grace = 60
    worker = start_lms("worker", jobs={"shutdown_grace_seconds": grace})
    await kick("diagnostics.probe", key="running", hold=True)
    await wait_runs(redis, "running", 1, timeout=10)
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_output("SIGTERM: stopping", timeout=10)
    await kick("diagnostics.probe", key="late")

    await redis.set("running:release", b"1")
    released = time.monotonic()
    assert await asyncio.to_thread(worker.process.wait, grace) == 0
    # It exits once its task is done (about a second), not at the end of the grace (60 s): 30 s is
    # room for a loaded machine that still tells the two apart.
    assert time.monotonic() - released < grace / 2
    # Its log is complete now that it exited: the stopping worker started nothing new.
    assert await runs(redis, "late") == []
    [finished] = await wait_runs(redis, "running", 1, timeout=1, phase="finished")
    assert finished["pid"] == worker.pid
    # "late" may have been read by the last read before the stop was seen:
    # then it went back to the queue with the hand-back, unstarted.

    successor = start_lms("worker")
    [late] = await wait_runs(redis, "late", 1, timeout=10, phase="finished")
    assert late["pid"] == successor.pid
    assert len(await runs(redis, "running")) == 1  # the finished task was not run again


async def test_sigterm_hands_back_a_task_that_outlives_the_grace_period(
    start_lms: Callable[..., LmsProcess], kick: Kick, redis: aioredis.Redis
) -> None:
    grace, idle = 3, 120  # a redelivery long before `idle` can only be the hand-back
    settings = {"jobs": {"shutdown_grace_seconds": grace, "idle_redelivery_seconds": idle}}
    worker = start_lms("worker", **settings)
    await kick("diagnostics.probe", key="long", hold=True)
    [first] = await wait_runs(redis, "long", 1, timeout=10)
    # The task never ends by itself: only the end of the grace can stop the worker (stop() fails after 30 s).
    exit_code = worker.stop(signal.SIGTERM, timeout=grace + 27)
    assert exit_code == 0, worker.output
    assert "handed 1 unfinished message(s) back" in worker.output

    successor = start_lms("worker", **settings)
    second = (await wait_runs(redis, "long", 2, timeout=15))[1]
    assert second["pid"] == successor.pid and second["task_id"] == first["task_id"]
    await redis.set("long:release", b"1")
    await wait_runs(redis, "long", 1, timeout=10, phase="finished")


async def email_row(db: Database, message_id: str) -> Row | None:
    async with db.connection() as conn:
        return await conn.fetch_one(select(email_log).where(email_log.c.message_id == message_id))


async def wait_for_row(db: Database, message_id: str, status: str, timeout: float) -> Row:
    async def row() -> Row | None:
        found = await email_row(db, message_id)
        return found if found is not None and found["status"] == status else None

    return await eventually(row, timeout=timeout, what=f"email {message_id} {status}")


async def wait_for_dead_letters(db: Database, count: int, timeout: float) -> list[Row]:
    async def rows() -> list[Row]:
        async with db.connection() as conn:
            found = await conn.fetch_all(select(job_dead_letters))
        return found if len(found) >= count else []

    return await eventually(rows, timeout=timeout, what=f"{count} dead letter(s)")


def sessions(login_attempts: list[float]) -> list[float]:
    """Login attempts grouped per SMTP session (the client tries several mechanisms at once)."""
    starts: list[float] = []
    for at in login_attempts:
        if not starts or at - starts[-1] > 0.15:
            starts.append(at)
    return starts


async def test_smtp_login_failures_are_retried_with_backoff_then_dead_lettered(
    start_lms: Callable[..., LmsProcess], kick: Kick, db: Database
) -> None:
    base, retries = 0.4, 3
    catcher = SmtpCatcher(username="lms", password="pw")
    catcher.refuse_logins = True
    with running_smtp_server(catcher) as server:
        start_lms(
            "worker",
            smtp=server.settings(),
            jobs={"max_retries": retries, "retry_base_seconds": base, "retry_max_seconds": 30},
        )
        await kick("send_email", template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="m1")
        row = await wait_for_row(db, "m1", "failed", timeout=30)
        assert row["attempts"] == retries + 1 and "login refused" in row["error"]
        # The task marks the log row; the dead letter is written right after it returns.
        [dead] = await wait_for_dead_letters(db, 1, timeout=10)
        assert (dead["task_name"], dead["reason"], dead["attempts"]) == ("send_email", "exhausted", retries + 1)
        assert dead["kwargs"]["message_id"] == "m1" and "login refused" in dead["error"]
        # Backoff: retry n waits at least half of base * 2**(n-1) (equal jitter).
        starts = sessions(catcher.login_attempts)
        assert len(starts) == retries + 1, catcher.login_attempts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        for n, gap in enumerate(gaps, start=1):
            assert gap >= base * 2 ** (n - 1) / 2 * 0.95, gaps

        # The same outage, fixed while a retry is pending: delivered once.
        catcher.login_attempts.clear()
        await kick("send_email", template="welcome", to="b@example.com", context={"full_name": "B"}, message_id="m2")
        await eventually(lambda: catcher.login_attempts, what="a first, refused login", interval=0.02)
        catcher.refuse_logins = False
        row = await wait_for_row(db, "m2", "sent", timeout=30)
        assert row["attempts"] >= 2
        assert [m.rcpt_tos for m in catcher.messages] == [["b@example.com"]]


async def test_a_backlog_of_slow_work_does_not_hold_up_emails(
    start_lms: Callable[..., LmsProcess], kick: Kick, redis: aioredis.Redis, smtp_server: SmtpServer, db: Database
) -> None:
    start_lms("worker", smtp=smtp_server.settings(), jobs={"slow_concurrency": 1})
    for _ in range(3):
        await kick("diagnostics.probe_slow", key="pdf", hold=True)
    await wait_runs(redis, "pdf", 1, timeout=10)
    await kick("send_email", template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="fast")
    await wait_for_row(db, "fast", "sent", timeout=10)
    assert len(smtp_server.messages) == 1
    assert len(await runs(redis, "pdf")) == 1  # the slow queue is still busy with its first
    await redis.set("pdf:release", b"1")
    await wait_runs(redis, "pdf", 3, timeout=15, phase="finished")


async def test_a_welcome_email_from_registration_lands_in_the_development_mail_folder(
    start_lms: Callable[..., LmsProcess], aiohttp_client: Any, servers: Servers, tmp_path: Path
) -> None:
    from lms.app import create_app

    outbox = tmp_path / "mail"
    smtp = {"transport": "folder", "outbox_dir": str(outbox)}
    start_lms("worker", smtp=smtp)
    client = await aiohttp_client(create_app(make_config(servers, smtp=smtp)))
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "newcomer@example.com", "password": "a long enough passphrase", "full_name": "Newcomer"},
    )
    assert response.status in (200, 201), await response.text()
    [path] = await eventually(lambda: list(outbox.glob("welcome-*.eml")), what="the welcome email in the folder")
    content = path.read_bytes()
    assert b"To: Newcomer <newcomer@example.com>" in content and b"Welcome to LMS" in content


async def test_the_scheduler_lists_its_schedules_and_stops_on_sigterm(start_lms: Callable[..., LmsProcess]) -> None:
    scheduler = start_lms("scheduler", jobs={"schedule_timezone": "Europe/Paris"})
    for expected in (
        "weekly_progress [0 9 * * 1 Europe/Paris]",
        "course_reminders [0 10 * * *",
        "cleanup_tokens [30 3",
    ):
        assert expected in scheduler.output, scheduler.output
    assert scheduler.stop(signal.SIGTERM, timeout=10) == 0
    assert "scheduler stopped" in scheduler.output


async def test_the_scheduler_kicks_a_due_task_that_a_worker_runs(start_lms: Callable[..., LmsProcess]) -> None:
    # Every minute, so that a tick comes within a minute.
    worker = start_lms("worker")
    scheduler = start_lms("scheduler", jobs={"token_cleanup_cron": "* * * * *"})
    worker.wait_for_output("token cleanup deleted 0 refresh token(s)", timeout=75)
    assert "Sending task cleanup_tokens" in scheduler.output


async def test_the_taskiq_cli_on_our_broker_runs_tasks_and_exits_on_sigterm(
    servers: Servers, kick: Kick, redis: aioredis.Redis
) -> None:
    """`taskiq worker` on taskiq-redis 1.2.4 + redis-py 8 hung on SIGTERM (jobs/streams.py); ours must not."""
    worker = LmsProcess(["worker", "jobs.broker:broker", "--workers", "1"], lms_environment(servers), module="taskiq")
    try:
        worker.wait_for_output("Listening started", timeout=60)
        await kick("diagnostics.probe", key="cli")
        await wait_runs(redis, "cli", 1, timeout=10, phase="finished")
        # The hang it guards against is forever; 15 s is room for a loaded machine (it takes about 1 s).
        assert worker.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        worker.close()
