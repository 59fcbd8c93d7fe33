"""`lms jobs list | run | dead | requeue`, as real processes over the task registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy import func, insert, select

from jobs import deadletter
from jobs.broker import stream_name
from jobs.tasks import all_specs
from lms.config import Settings
from lms.db import Database
from lms.tables import job_dead_letters, refresh_tokens
from tests.builders import make_course, make_enrollment, make_user
from tests.conftest import LmsProcess, Servers, SmtpServer
from tests.test_cli import run_lms


def test_list_names_every_registered_task_with_its_queue_and_schedule(servers: Servers, config: Settings) -> None:
    result = run_lms(servers, "jobs", "list")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    for name, spec in all_specs().items():
        assert spec.queue in lines[name].split()[1]
        if spec.schedule is not None:
            assert f"{getattr(config.jobs, spec.schedule)} ({config.jobs.schedule_timezone})" in lines[name]
        else:
            assert "when enqueued" in lines[name]
    assert "takes course_id" in lines["recalculate_course_progress"]


async def test_run_executes_a_task_here_and_now(servers: Servers, db: Database) -> None:
    user = await make_user(db)
    async with db.transaction() as conn:
        await conn.execute(
            insert(refresh_tokens).values(
                user_id=user["id"], family_id=uuid.uuid4(), token_hash=uuid.uuid4().hex,
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )  # fmt: skip
    # No worker runs: the token can only go if the command itself ran the task.
    result = run_lms(servers, "jobs", "run", "cleanup_tokens")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cleanup_tokens finished in ") and result.stdout.strip().endswith(": 1")
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(refresh_tokens)) == 0


async def test_run_passes_arguments_and_fan_out_goes_to_the_queues(
    servers: Servers, db: Database, redis: aioredis.Redis, config: Settings
) -> None:
    key = f"probe:{uuid.uuid4().hex}"
    probe = run_lms(servers, "jobs", "run", "diagnostics.probe", f"key={key}")
    assert probe.returncode == 0, probe.stderr
    [record] = await redis.lrange(f"{key}:finished", 0, -1)
    assert json.loads(record)["consumer"] == "inline"  # ran in the command, not on a worker

    teacher = await make_user(db, role="instructor")
    await make_enrollment(db, await make_user(db), await make_course(db, teacher, is_published=True, lessons=2))
    report = run_lms(servers, "jobs", "run", "weekly_progress")
    assert report.returncode == 0, report.stderr
    assert await redis.xlen(stream_name(config, "emails")) == 1  # the student's email waits for a worker


async def test_a_failing_task_exits_1_with_its_error_and_leaves_no_dead_letter(servers: Servers, db: Database) -> None:
    result = run_lms(servers, "jobs", "run", "recalculate_course_progress", "course_id=not-a-uuid")
    assert result.returncode == 1
    assert "recalculate_course_progress failed" in result.stderr and "badly formed" in result.stderr
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(job_dead_letters)) == 0


def test_run_refuses_unknown_tasks_and_arguments_before_running(servers: Servers) -> None:
    cases = {
        ("no_such_task",): "no task named 'no_such_task'",
        ("recalculate_course_progress",): "missing argument(s) course_id",
        ("cleanup_tokens", "force=yes"): "unknown argument(s) force",
        ("cleanup_tokens", "novalue"): "task arguments are NAME=VALUE",
        ("send_email", "context={not json"): "context: not valid JSON",
    }
    for argv, message in cases.items():
        result = run_lms(servers, "jobs", "run", *argv)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert message in result.stderr, (argv, result.stderr)


async def test_dead_letters_are_listed_and_requeued_once_to_a_worker(
    servers: Servers, db: Database, smtp_server: SmtpServer, start_lms: Callable[..., LmsProcess]
) -> None:
    assert run_lms(servers, "jobs", "dead").stdout.strip() == "no dead letters"
    kwargs = {"template": "welcome", "to": "someone@example.com", "context": {"full_name": "Some One"}}
    async with db.transaction() as conn:
        await deadletter.record(
            conn, task_id="t-1", task_name="send_email", queue="emails", args=[], kwargs=kwargs, labels={},
            reason="exhausted", error=ConnectionRefusedError("SMTP server down"), attempts=6,
        )  # fmt: skip
        letter_id = await conn.fetch_val(select(job_dead_letters.c.id))

    listed = run_lms(servers, "jobs", "dead")
    assert str(letter_id) in listed.stdout and "send_email" in listed.stdout
    assert "exhausted, 6 attempt(s)" in listed.stdout and "ConnectionRefusedError: SMTP server down" in listed.stdout

    start_lms("worker", smtp=smtp_server.settings())
    requeued = run_lms(servers, "jobs", "requeue", str(letter_id))
    assert requeued.returncode == 0, requeued.stderr
    assert "send_email requeued on emails as task" in requeued.stdout
    [mail] = smtp_server.catcher.wait_for(1)
    assert mail.rcpt_tos == ["someone@example.com"]
    async with db.connection() as conn:
        assert await conn.fetch_val(select(job_dead_letters.c.requeued_at)) is not None
    assert "requeued" in run_lms(servers, "jobs", "dead").stdout

    twice = run_lms(servers, "jobs", "requeue", str(letter_id))
    assert twice.returncode == 2 and "requeued already" in twice.stderr
    unknown = run_lms(servers, "jobs", "requeue", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "no dead letter" in unknown.stderr
    malformed = run_lms(servers, "jobs", "requeue", "not-an-id")
    assert malformed.returncode == 2 and "invalid UUID" in malformed.stderr
