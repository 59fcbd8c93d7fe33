"""Jobs through Taskiq's in-memory broker: the tasks, retries, dead letters, idempotency, schedules."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, insert, select
from taskiq.cli.scheduler.run import is_cron_task_now
from taskiq.exceptions import ScheduledTaskCancelledError

from jobs.broker import InlineBroker, build_inline_broker, build_producer, stream_name
from jobs.queue import BrokerJobQueue, InlineJobQueue, JobFailed, UnknownTask
from jobs.retry import RetryPolicy
from jobs.schedule import OncePerTickSource
from jobs.tasks import all_specs
from lms.config import Settings
from lms.db import Database, Row
from lms.jobqueue import JOBS
from lms.tables import email_log, job_dead_letters, refresh_tokens
from tests.builders import make_course, make_enrollment, make_user
from tests.conftest import Servers, SmtpCatcher, SmtpServer, make_config, redis_for, running_smtp_server

FAST_RETRIES = {"mode": "inline", "retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "max_retries": 2}


def inline_config(servers: Servers, smtp: SmtpServer) -> Settings:
    return make_config(servers, jobs=FAST_RETRIES, smtp=smtp.settings())


@pytest.fixture
async def inline(servers: Servers, smtp_server: SmtpServer) -> AsyncIterator[tuple[InlineJobQueue, InlineBroker]]:
    broker = build_inline_broker(inline_config(servers, smtp_server))
    await broker.startup()
    yield InlineJobQueue(broker, all_specs()), broker
    await broker.shutdown()


async def email_rows(db: Database) -> list[Row]:
    async with db.connection() as conn:
        return await conn.fetch_all(select(email_log).order_by(email_log.c.created_at))


async def dead_letters(db: Database) -> list[Row]:
    async with db.connection() as conn:
        return await conn.fetch_all(select(job_dead_letters))


# -- retry policy ------------------------------------------------------------------


@pytest.mark.no_services
def test_backoff_doubles_with_jitter_within_half_and_full_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=8, base_seconds=2.0, max_seconds=30.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 15.0]
    # Below the cap, jitter never lets a later retry come sooner than an earlier one could.
    for n in range(1, 4):
        assert policy.delay(n + 1, rand=lambda: 0.0) >= policy.delay(n, rand=lambda: 1.0)


# -- send_email ------------------------------------------------------------------


async def test_send_email_delivers_and_logs(
    inline: tuple[InlineJobQueue, InlineBroker], smtp_server: SmtpServer, db: Database
) -> None:
    queue, _ = inline
    user = await make_user(db)
    await queue.enqueue(
        "send_email", template="welcome", to=user["email"], context={"full_name": "Ada"}, user_id=str(user["id"])
    )
    [mail] = smtp_server.catcher.wait_for(1)
    assert mail.rcpt_tos == [user["email"]]
    [row] = await email_rows(db)
    assert (row["status"], row["user_id"], row["template"]) == ("sent", user["id"], "welcome")
    # The enqueuing side filled the idempotency key; the header derives from it.
    assert row["message_id"] and mail.message["Message-ID"] == f"<{row['message_id']}@lms.local>"


async def test_send_email_twice_with_one_message_id_sends_once(
    inline: tuple[InlineJobQueue, InlineBroker], smtp_server: SmtpServer, db: Database
) -> None:
    queue, _ = inline
    for _ in range(2):
        await queue.enqueue(
            "send_email", template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="k1"
        )
    assert len(smtp_server.messages) == 1
    [row] = await email_rows(db)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_an_unknown_template_fails_loudly_once_and_is_dead_lettered(
    inline: tuple[InlineJobQueue, InlineBroker], smtp_server: SmtpServer, db: Database
) -> None:
    queue, broker = inline
    with pytest.raises(JobFailed, match="unknown email template"):
        await queue.enqueue("send_email", template="nope", to="a@example.com", context={}, message_id="bad")
    await broker.wait_retries()
    [row] = await email_rows(db)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    [dead] = await dead_letters(db)
    assert (dead["task_name"], dead["reason"], dead["attempts"], dead["queue"]) == (
        "send_email",
        "permanent",
        1,
        "emails",
    )
    assert dead["error_type"] == "lms.mail.errors.TemplateError" and "nope" in dead["error"]
    assert dead["kwargs"]["template"] == "nope" and dead["kwargs"]["message_id"] == "bad"
    assert smtp_server.messages == []


async def test_a_missing_context_key_fails_loudly(inline: tuple[InlineJobQueue, InlineBroker], db: Database) -> None:
    queue, _ = inline
    with pytest.raises(JobFailed, match="verify_url"):
        await queue.enqueue("send_email", template="email_verification", to="a@example.com", context={"full_name": "A"})
    [row] = await email_rows(db)
    assert row["status"] == "failed"


async def test_a_refused_login_is_retried_with_backoff_until_it_works(servers: Servers, db: Database) -> None:
    catcher = SmtpCatcher(username="lms", password="pw")
    catcher.refuse_logins = True
    with running_smtp_server(catcher) as server:
        broker = build_inline_broker(inline_config(servers, server))
        await broker.startup()
        try:
            queue = InlineJobQueue(broker, all_specs())
            await queue.enqueue(
                "send_email", template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="r"
            )
            [row] = await email_rows(db)
            assert (row["status"], row["attempts"]) == ("queued", 1) and "535" in row["error"]
            catcher.refuse_logins = False
            await broker.wait_retries()
        finally:
            await broker.shutdown()
    [row] = await email_rows(db)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert len(catcher.messages) == 1
    assert await dead_letters(db) == []


async def test_retries_stop_at_the_maximum_and_leave_a_dead_letter(servers: Servers, db: Database) -> None:
    catcher = SmtpCatcher(username="lms", password="pw")
    catcher.refuse_logins = True
    with running_smtp_server(catcher) as server:
        broker = build_inline_broker(inline_config(servers, server))
        await broker.startup()
        try:
            queue = InlineJobQueue(broker, all_specs())
            await queue.enqueue(
                "send_email", template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="x"
            )
            await broker.wait_retries()
        finally:
            await broker.shutdown()
    [row] = await email_rows(db)
    assert (row["status"], row["attempts"]) == ("failed", 3)  # max_retries 2: three runs
    [dead] = await dead_letters(db)
    assert (dead["reason"], dead["attempts"], dead["labels"]["retries"]) == ("exhausted", 3, 2)
    assert dead["error_type"] == "lms.mail.errors.MailUnavailable" and "login refused" in dead["error"]
    assert catcher.messages == []


async def test_an_unknown_task_name_is_refused_at_enqueue(inline: tuple[InlineJobQueue, InlineBroker]) -> None:
    queue, _ = inline
    with pytest.raises(UnknownTask, match="send_emial"):
        await queue.enqueue("send_emial", template="welcome")


# -- scheduled tasks: each run twice has one effect ------------------------------------


async def test_weekly_progress_reaches_each_active_student_once_however_often_it_runs(
    inline: tuple[InlineJobQueue, InlineBroker], smtp_server: SmtpServer, db: Database
) -> None:
    queue, _ = inline
    instructor = await make_user(db, role="instructor")
    rust = await make_course(db, instructor, title="Rust", is_published=True)
    go = await make_course(db, instructor, title="Go", is_published=True)
    ada = await make_user(db, full_name="Ada")
    await make_enrollment(db, ada, rust, progress_percentage=40)
    await make_enrollment(db, ada, go, progress_percentage=12.5)
    dropped = await make_user(db)
    await make_enrollment(db, dropped, rust, status="dropped")
    inactive = await make_user(db, is_active=False)
    await make_enrollment(db, inactive, rust)

    await queue.enqueue("weekly_progress")
    await queue.enqueue("weekly_progress")

    [mail] = smtp_server.catcher.wait_for(1)
    assert mail.rcpt_tos == [ada["email"]]
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert "Go: 12.5%" in text.get_content() and "Rust: 40.0%" in text.get_content()
    year, week, _ = datetime.now(UTC).isocalendar()
    [row] = await email_rows(db)
    assert row["message_id"] == f"weekly_progress:{ada['id']}:{year}-W{week:02d}"
    assert len(smtp_server.messages) == 1


async def test_course_reminders_reach_students_inactive_for_a_week_once(
    inline: tuple[InlineJobQueue, InlineBroker], smtp_server: SmtpServer, db: Database
) -> None:
    queue, _ = inline
    instructor = await make_user(db, role="instructor")
    course = await make_course(db, instructor, title="Rust", is_published=True)
    now = datetime.now(UTC)
    idle = await make_user(db, full_name="Idle")
    await make_enrollment(db, idle, course, last_accessed_at=now - timedelta(days=9))
    never = await make_user(db, full_name="Never")
    await make_enrollment(db, never, course, enrolled_at=now - timedelta(days=30))
    busy = await make_user(db)
    await make_enrollment(db, busy, course, last_accessed_at=now - timedelta(days=1))
    finished = await make_user(db)
    await make_enrollment(db, finished, course, status="completed", last_accessed_at=now - timedelta(days=20))

    await queue.enqueue("course_reminders")
    await queue.enqueue("course_reminders")

    mails = smtp_server.catcher.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted([idle["email"], never["email"]])
    assert len(mails) == 2
    idle_mail = next(m for m in mails if m.rcpt_tos == [idle["email"]])
    body = idle_mail.message.get_body(("plain",))
    assert body is not None and "9 days" in body.get_content() and f"/courses/{course['slug']}" in body.get_content()


async def test_token_cleanup_deletes_expired_and_long_revoked_tokens_and_is_idempotent(
    inline: tuple[InlineJobQueue, InlineBroker], db: Database
) -> None:
    queue, _ = inline
    user = await make_user(db)
    now = datetime.now(UTC)

    async def token(**values: Any) -> uuid.UUID:
        row_id = uuid.uuid4()
        async with db.transaction() as conn:
            await conn.execute(
                insert(refresh_tokens).values(
                    id=row_id, user_id=user["id"], family_id=uuid.uuid4(), token_hash=uuid.uuid4().hex,
                    expires_at=values.pop("expires_at", now + timedelta(days=10)), **values,
                )
            )  # fmt: skip
        return row_id

    live = await token()
    await token(expires_at=now - timedelta(minutes=1))
    await token(revoked_at=now - timedelta(days=30))
    recently_revoked = await token(revoked_at=now - timedelta(hours=1))

    await queue.enqueue("cleanup_tokens")
    await queue.enqueue("cleanup_tokens")

    async with db.connection() as conn:
        left = {r["id"] for r in await conn.fetch_all(select(refresh_tokens.c.id))}
    assert left == {live, recently_revoked}


# -- schedules -----------------------------------------------------------------


def schedules(config: Settings) -> dict[str, dict[str, Any]]:
    broker = build_producer(config)
    return {
        name: task.labels["schedule"][0] for name, task in broker.get_all_tasks().items() if task.labels.get("schedule")
    }


def test_the_scheduled_tasks_and_their_cron_come_from_the_settings(servers: Servers) -> None:
    found = schedules(
        make_config(servers, jobs={"course_reminders_cron": "15 8 * * *", "schedule_timezone": "Asia/Tokyo"})
    )
    assert set(found) >= {"weekly_progress", "course_reminders", "cleanup_tokens"}
    assert found["weekly_progress"]["cron"] == "0 9 * * 1"
    assert found["course_reminders"] == {
        "cron": "15 8 * * *",
        "cron_offset": "Asia/Tokyo",
        "schedule_id": "course_reminders",
    }


def test_the_weekly_report_fires_on_monday_at_nine_and_reminders_daily_at_ten(servers: Servers) -> None:
    found = schedules(make_config(servers))
    weekly, daily = found["weekly_progress"], found["course_reminders"]
    monday_nine = datetime(2026, 11, 23, 9, 0, 20, tzinfo=UTC)  # a Monday

    def fires(schedule: dict[str, Any], at: datetime) -> bool:
        return is_cron_task_now(schedule["cron"], at, offset=schedule["cron_offset"])

    assert fires(weekly, monday_nine)
    assert not fires(weekly, monday_nine + timedelta(minutes=1))
    assert not fires(weekly, monday_nine + timedelta(days=1))
    assert fires(daily, monday_nine + timedelta(hours=1)) and fires(daily, monday_nine + timedelta(days=3, hours=1))
    assert not fires(daily, monday_nine)


def test_schedules_follow_the_configured_time_zone(servers: Servers) -> None:
    weekly = schedules(make_config(servers, jobs={"schedule_timezone": "Europe/Paris"}))["weekly_progress"]
    # 09:00 in Paris in November is 08:00 UTC.
    assert is_cron_task_now(weekly["cron"], datetime(2026, 11, 23, 8, 0, tzinfo=UTC), offset=weekly["cron_offset"])
    assert not is_cron_task_now(weekly["cron"], datetime(2026, 11, 23, 9, 0, tzinfo=UTC), offset=weekly["cron_offset"])


async def test_a_tick_is_sent_by_one_scheduler_only(servers: Servers, config: Settings) -> None:
    from taskiq import ScheduledTask

    first = OncePerTickSource(None, redis_for(servers), "lms:jobs")
    second = OncePerTickSource(None, redis_for(servers), "lms:jobs")
    tick = ScheduledTask(
        task_name="weekly_progress", labels={}, args=[], kwargs={}, schedule_id="weekly_progress", cron="* * * * *"
    )
    try:
        await first.pre_send(tick)
        with pytest.raises(ScheduledTaskCancelledError):
            await second.pre_send(tick)
    finally:
        await first.redis.aclose()
        await second.redis.aclose()


# -- the web app's queue ----------------------------------------------------------------


async def test_the_app_kicks_to_the_task_queue_stream_after_creating_the_consumer_groups(
    client: Any, config: Settings, redis: aioredis.Redis
) -> None:
    queue = client.app[JOBS]
    assert isinstance(queue, BrokerJobQueue)
    for name in ("emails", "default", "slow"):
        groups = await redis.xinfo_groups(stream_name(config, name))  # type: ignore[arg-type]
        assert [g["name"] for g in groups] == [b"workers"]
    await queue.enqueue("send_email", template="welcome", to="a@example.com", context={"full_name": "A"})
    [(_, fields)] = await redis.xrange(stream_name(config, "emails"))
    assert b"send_email" in fields[b"data"] and b"message_id" in fields[b"data"]
    assert await redis.xlen(stream_name(config, "default")) == 0


async def test_an_inline_app_runs_the_task_before_enqueue_returns(
    aiohttp_client: Any, servers: Servers, smtp_server: SmtpServer, db: Database
) -> None:
    from lms.app import create_app

    client = await aiohttp_client(create_app(inline_config(servers, smtp_server)))
    await client.app[JOBS].enqueue("send_email", template="welcome", to="a@example.com", context={"full_name": "A"})
    assert len(smtp_server.messages) == 1
    async with db.connection() as conn:
        assert (
            await conn.fetch_val(select(func.count()).select_from(email_log).where(email_log.c.status == "sent")) == 1
        )


@pytest.mark.no_services
def test_lms_up_runs_a_worker_and_the_scheduler_beside_the_server() -> None:
    from lms.cli import COMMANDS, up_processes

    commands = [argv[0] for argv in up_processes("127.0.0.1", 8000)]
    assert commands == ["serve", "worker", "scheduler"]
    assert {"worker", "scheduler"} <= set(COMMANDS)
