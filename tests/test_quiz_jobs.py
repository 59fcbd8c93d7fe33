"""Quiz jobs: the result email after grading and the scheduled closer of abandoned attempts.

Jobs run inline (Taskiq's in-memory broker, the real tasks); mail goes to a folder.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from taskiq.cli.scheduler.run import is_cron_task_now

from jobs.broker import build_producer
from lms.app import create_app
from lms.config import Settings
from lms.db import Database
from lms.jobqueue import JOBS
from lms.quizzes.clock import CLOCK
from lms.tables import email_log
from tests.builders import FakeClock, make_question, make_quiz, make_quiz_course, make_quiz_enrollment, signed_in
from tests.conftest import Servers, make_config

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def config(servers: Servers, outbox: Path) -> Settings:
    return make_config(servers, jobs={"mode": "inline"}, smtp={"transport": "folder", "outbox_dir": str(outbox)})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(config: Settings, clock: FakeClock) -> web.Application:
    app = create_app(config)
    app[CLOCK] = clock
    return app


async def _setup(client: Client, db: Database, **quiz: Any) -> tuple[dict[str, str], Any, Any]:
    owner, _ = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner["id"])
    quiz_row = await make_quiz(db, course_id=course["id"], title="Capitals", passing_score=50, **quiz)
    await make_question(db, quiz_id=quiz_row["id"], points=2)  # single choice, "b" is right
    await make_question(db, quiz_id=quiz_row["id"], question_type="true_false")
    student, headers = await signed_in(client, db, role="student", full_name="Ada Student")
    await make_quiz_enrollment(db, student_id=student["id"], course_id=course["id"])
    return headers, quiz_row, student


def _mails(outbox: Path) -> list[Any]:
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


async def test_a_graded_attempt_emails_the_result(client: Client, db: Database, config: Settings, outbox: Path) -> None:
    headers, quiz, student = await _setup(client, db)
    attempt = await (await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=headers)).json()
    single = attempt["questions"][0]["id"]
    response = await client.post(
        f"/api/v1/attempts/{attempt['id']}/submit",
        json={"answers": [{"question_id": single, "answer": "b"}]},
        headers=headers,
    )
    assert response.status == 200, await response.text()

    async with db.connection() as conn:
        rows = await conn.fetch_all(select(email_log).where(email_log.c.template == "quiz_result"))
    assert len(rows) == 1
    assert (rows[0]["status"], rows[0]["to_address"], rows[0]["user_id"]) == ("sent", student["email"], student["id"])
    assert rows[0]["message_id"] == f"<quiz-result-{attempt['id']}@lms>"
    [mail] = _mails(outbox)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "Capitals" in text
    assert "66.67%" in text
    assert "You passed" in text
    assert f"{config.http.public_base_url}/attempts/{attempt['id']}" in text


async def test_the_closer_task_grades_abandoned_attempts_and_emails_them(
    client: Client, db: Database, app: web.Application, clock: FakeClock, outbox: Path
) -> None:
    headers, quiz, _ = await _setup(client, db, time_limit_seconds=60)
    clock.advance(-3600)  # started an hour ago: the deadline passed long since (by the real clock too)
    attempt = await (await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=headers)).json()
    tf = attempt["questions"][1]["id"]
    await client.put(
        f"/api/v1/attempts/{attempt['id']}/answers",
        json={"answers": [{"question_id": tf, "answer": True}]},
        headers=headers,
    )

    await app[JOBS].enqueue("close_abandoned_quiz_attempts")

    graded = await (await client.get(f"/api/v1/attempts/{attempt['id']}", headers=headers)).json()
    assert (graded["status"], graded["timed_out"], graded["percentage"]) == ("graded", True, 33.33)
    assert graded["time_taken_seconds"] == 60
    [mail] = _mails(outbox)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "33.33%" in text and "did not pass" in text
    # Running it again finds nothing to do and sends nothing more.
    await app[JOBS].enqueue("close_abandoned_quiz_attempts")
    assert len(_mails(outbox)) == 1


def test_the_closer_runs_every_five_minutes_by_default(servers: Servers) -> None:
    def schedule(config: Settings) -> dict[str, Any]:
        task = build_producer(config).find_task("close_abandoned_quiz_attempts")
        assert task is not None
        entry: dict[str, Any] = task.labels["schedule"][0]
        return entry

    default = schedule(make_config(servers))
    assert default["cron"] == "*/5 * * * *"
    assert default["schedule_id"] == "close_abandoned_quiz_attempts"
    at = datetime(2026, 11, 23, 9, 10, tzinfo=UTC)
    assert is_cron_task_now(default["cron"], at, offset=default["cron_offset"])
    assert not is_cron_task_now(default["cron"], at + timedelta(minutes=1), offset=default["cron_offset"])
    assert schedule(make_config(servers, jobs={"abandoned_attempts_cron": "* * * * *"}))["cron"] == "* * * * *"
