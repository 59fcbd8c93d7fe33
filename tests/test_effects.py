"""The web app and the workers announce a use case the same way.

Each use case runs twice on fresh data: once with a request's effects (the
event bus of instance A, emitted through its queue) and once with a worker's
(``Resources.effects``: the write-only emitter). Watchers on instance B, an
instructor's dashboard and the student's device, record what arrives; both
runs must deliver the same events, with the same payloads, to the same
places. A marker published after each run, through the same path, says when
everything before it has arrived (events of one path keep their order).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, update

from jobs.resources import close_resources, open_resources
from lms.auth.guards import Principal
from lms.config import Settings
from lms.db import Database
from lms.effects import EFFECTS, Effects
from lms.enrollments import service as enrollments
from lms.events import CourseCompleted
from lms.jobqueue import JOBS
from lms.payments.settlement import deliver_effects
from lms.quizzes.service import announce, close_abandoned_attempts
from lms.tables import lesson_progress, lessons, payments, quiz_attempts
from tests.builders import login, make_course, make_enrollment, make_question, make_quiz, make_user
from tests.conftest import Instance
from tests.polling import eventually

DASH = "/dashboard"
MARK = uuid.UUID(int=0)
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

UseCase = Callable[[Effects, dict[str, Any]], Awaitable[None]]


def principal(user: dict[str, Any]) -> Principal:
    return Principal(
        id=user["id"], role=user["role"], email=user["email"], full_name=user["full_name"], jti="t", expires_at=0
    )


async def enroll(effects: Effects, world: dict[str, Any]) -> None:
    await enrollments.enroll(world["db"], effects, principal(world["student"]), world["course"]["id"])


async def complete_the_last_lesson(effects: Effects, world: dict[str, Any]) -> None:
    enrollment = await make_enrollment(world["db"], world["student"], world["course"])
    await enrollments.record_progress(
        world["db"], effects, principal(world["student"]), enrollment["id"], world["lesson"]["id"], percentage=100
    )


async def recalculate_after_a_lesson_is_withdrawn(effects: Effects, world: dict[str, Any]) -> None:
    db, course = world["db"], world["course"]
    async with db.transaction() as conn:
        other = await conn.fetch_val(
            insert(lessons)
            .values(course_id=course["id"], title="Extra", slug=f"extra-{uuid.uuid4().hex[:6]}",
                    content_type="text", position=2, is_published=True)
            .returning(lessons.c.id)
        )  # fmt: skip
    enrollment = await make_enrollment(db, world["student"], course, total_lessons_count=2)
    async with db.transaction() as conn:
        await conn.execute(
            insert(lesson_progress).values(
                enrollment_id=enrollment["id"], lesson_id=world["lesson"]["id"], status="completed",
                completion_percentage=100,
            )
        )  # fmt: skip
        await conn.execute(update(lessons).where(lessons.c.id == other).values(is_published=False))
    assert await enrollments.recalculate_course_progress(db, effects, course["id"]) == 1


async def close_a_timed_out_attempt(effects: Effects, world: dict[str, Any]) -> None:
    db = world["db"]
    enrollment = await make_enrollment(db, world["student"], world["course"])
    quiz = await make_quiz(db, course_id=world["course"]["id"], time_limit_seconds=60)
    await make_question(db, quiz_id=quiz["id"])
    started = datetime.now(UTC) - timedelta(minutes=5)
    async with db.transaction() as conn:
        await conn.execute(
            insert(quiz_attempts).values(
                enrollment_id=enrollment["id"], quiz_id=quiz["id"], student_id=world["student"]["id"],
                attempt_number=1, started_at=started, deadline=started + timedelta(seconds=60), answers={},
            )
        )  # fmt: skip
    closed = await close_abandoned_attempts(db, datetime.now(UTC))
    assert len(closed) == 1
    await announce(effects, closed)


async def deliver_a_completed_payment(effects: Effects, world: dict[str, Any]) -> None:
    db, course, student = world["db"], world["course"], world["student"]
    enrollment = await make_enrollment(db, student, course)
    async with db.transaction() as conn:
        payment_id = await conn.fetch_val(
            insert(payments)
            .values(user_id=student["id"], course_id=course["id"], enrollment_id=enrollment["id"], amount=10,
                    currency="USD", gateway="stripe", status="completed", gateway_reference=uuid.uuid4().hex)
            .returning(payments.c.id)
        )  # fmt: skip
    assert await deliver_effects(db, effects, payment_id)


def shape(log: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """What arrived, with ids numbered in order of appearance and timestamps dropped (they differ per run)."""
    names: dict[str, str] = {}

    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items() if k != "created_at"}
        if isinstance(value, list):
            return [normal(v) for v in value]
        if isinstance(value, str) and UUID_TEXT.fullmatch(value):
            return names.setdefault(value, f"id{len(names)}")
        return value

    return [(ns, event, normal(data)) for ns, event, data in log]


async def token(instance: Instance, user: dict[str, Any]) -> str:
    return str((await login(instance.http, user["email"]))["access_token"])


async def what_watchers_hear(
    use_case: UseCase, effects: Effects, instance: Instance, db: Database, live: Any
) -> tuple[list[Any], list[Any]]:
    instructor = await make_user(db, role="instructor")
    student = await make_user(db, role="student")
    course = await make_course(db, instructor, is_published=True, lessons=1)
    async with db.connection() as conn:
        lesson = await conn.fetch_one(lessons.select().where(lessons.c.course_id == course["id"]))
    watcher = await live().connect(instance.url, await token(instance, instructor), DASH)
    assert (await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH))["ok"]
    device = await live().connect(instance.url, await token(instance, student))
    world = {"db": db, "course": course, "student": student, "lesson": lesson}

    await use_case(effects, world)
    await effects.publish(CourseCompleted(course_id=course["id"], enrollment_id=MARK, student_id=MARK))
    await effects.notify(student["id"], "certificate_ready", {"marker": True})

    def until_marker(log: list[tuple[str, str, Any]], marker: Callable[[Any], bool]) -> tuple[list[Any]] | None:
        for i, (_, _, data) in enumerate(log):
            if marker(data):
                return (log[:i],)
        return None

    (dashboard,) = await eventually(
        lambda: until_marker(watcher.log, lambda d: isinstance(d, dict) and d.get("enrollment_id") == str(MARK)),
        what="the dashboard marker",
    )
    (devices,) = await eventually(
        lambda: until_marker(device.log, lambda d: isinstance(d, dict) and d.get("data") == {"marker": True}),
        what="the device marker",
    )
    return shape(dashboard), shape(devices)


EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "enroll": (["enrollment_created"], []),
    "complete_the_last_lesson": (["lesson_progress", "course_completed"], ["progress_updated"]),
    "recalculate_after_a_lesson_is_withdrawn": (["course_completed"], []),
    "close_a_timed_out_attempt": (["quiz_attempt_submitted"], ["notification"]),
    "deliver_a_completed_payment": (["enrollment_created"], ["notification", "notification"]),
}


USE_CASES = [
    enroll, complete_the_last_lesson, recalculate_after_a_lesson_is_withdrawn, close_a_timed_out_attempt,
    deliver_a_completed_payment,
]  # fmt: skip


@pytest.mark.parametrize("use_case", USE_CASES, ids=lambda f: f.__name__)
async def test_web_and_worker_paths_emit_the_same_events(
    use_case: UseCase, instances: list[Instance], db: Database, live: Any, config: Settings
) -> None:
    a, b = instances
    web = a.app[EFFECTS]
    resources = await open_resources(config, a.app[JOBS])
    try:
        by_web = await what_watchers_hear(use_case, web, b, db, live)
        by_worker = await what_watchers_hear(use_case, resources.effects, b, db, live)
    finally:
        await close_resources(resources)
    assert by_web == by_worker
    dashboard, devices = by_web
    assert ([e for _, e, _ in dashboard], [e for _, e, _ in devices]) == EXPECTED[use_case.__name__]
