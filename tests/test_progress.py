"""Progress: reports, validation, exact counters under concurrency, completion, re-computation jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

from sqlalchemy import func, select

from lms.appkeys import CONFIG
from lms.db import Database
from lms.effects import EFFECTS
from lms.enrollments import service
from lms.events import CourseCompleted, LessonProgressChanged
from lms.tables import certificates, email_log, enrollments, lesson_progress, lessons
from realtime.context import DASHBOARD_NAMESPACE, course_room
from realtime.fanout import room_channel
from tests.builders import (
    bearer,
    collect_events,
    login,
    make_course,
    make_enrollment,
    make_lesson,
    make_user,
    signed_in,
)

PROBLEM = "application/problem+json"


def progress_url(enrollment: Any, lesson: Any) -> str:
    return f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson['id']}/progress"


def complete_url(enrollment: Any, lesson: Any) -> str:
    return f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson['id']}/complete"


async def recorded(db: Database, enrollment: Any) -> tuple[int, int]:
    """The enrollment's study time and its number of lesson progress rows."""
    async with db.connection() as conn:
        seconds = await conn.fetch_val(
            select(enrollments.c.total_time_spent_seconds).where(enrollments.c.id == enrollment["id"])
        )
        rows = await conn.fetch_val(
            select(func.count()).select_from(lesson_progress).where(lesson_progress.c.enrollment_id == enrollment["id"])
        )
    return int(seconds), int(rows)


async def course_lessons(db: Database, course: Any) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        return await conn.fetch_all(
            select(lessons).where(lessons.c.course_id == course["id"]).order_by(lessons.c.position)
        )


async def test_reports_add_time_and_never_lower_the_percentage(client: Any, db: Database) -> None:
    student, headers = await signed_in(client, db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=3)
    first, *_ = await course_lessons(db, course)
    enrollment = await make_enrollment(db, student, course)

    response = await client.put(
        progress_url(enrollment, first),
        json={"time_spent_seconds": 60, "last_position_seconds": 30, "completion_percentage": 25},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["lesson"]["status"] == "in_progress" and body["lesson"]["completion_percentage"] == "25.00"
    assert body["lesson"]["time_spent_seconds"] == 60 and body["lesson"]["last_position_seconds"] == 30
    assert body["enrollment"]["total_time_spent_seconds"] == 60
    assert body["enrollment"]["started_at"] and body["enrollment"]["last_accessed_at"]

    body = await (
        await client.put(
            progress_url(enrollment, first),
            json={"time_spent_seconds": 30, "completion_percentage": 10},
            headers=headers,
        )
    ).json()
    assert body["lesson"]["completion_percentage"] == "25.00" and body["lesson"]["last_position_seconds"] == 30
    assert body["lesson"]["time_spent_seconds"] == 90 and body["enrollment"]["total_time_spent_seconds"] == 90

    body = await (
        await client.put(progress_url(enrollment, first), json={"completion_percentage": 100}, headers=headers)
    ).json()
    assert body["lesson"]["status"] == "completed" and body["lesson"]["completed_at"]
    assert body["enrollment"]["completed_lessons_count"] == 1 and body["enrollment"]["total_lessons_count"] == 3
    assert body["enrollment"]["progress_percentage"] == "33.33" and body["enrollment"]["status"] == "active"

    detail = await (await client.get(f"/api/v1/enrollments/{enrollment['id']}", headers=headers)).json()
    assert [(p["lesson_id"], p["status"]) for p in detail["lessons"]] == [(str(first["id"]), "completed")]


async def test_progress_input_is_validated(client: Any, db: Database) -> None:
    student, headers = await signed_in(client, db)
    owner = await make_user(db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    video = await make_lesson(db, course, content_type="video", duration_seconds=600)
    draft = await make_lesson(db, course, is_published=False)
    elsewhere = await make_lesson(db, await make_course(db, owner, is_published=True))
    enrollment = await make_enrollment(db, student, course)
    for body, field in (
        ({"time_spent_seconds": -1}, "time_spent_seconds"),
        ({"time_spent_seconds": 4 * 3600 + 1}, "time_spent_seconds"),
        ({"completion_percentage": 100.5}, "completion_percentage"),
        ({"completion_percentage": -1}, "completion_percentage"),
        ({"last_position_seconds": -5}, "last_position_seconds"),
        ({"last_position_seconds": 601}, "last_position_seconds"),
        ({"time_spent_seconds": "a lot"}, "time_spent_seconds"),
        ({"unknown": 1}, "unknown"),
    ):
        response = await client.put(progress_url(enrollment, video), json=body, headers=headers)
        assert response.status == 422 and response.content_type == PROBLEM, body
        assert [e["field"] for e in (await response.json())["errors"]] == [field], body
    # Past the end with time spent: refused whole, the time is not added either.
    past_end = {"time_spent_seconds": 30, "last_position_seconds": 601}
    assert (await client.put(progress_url(enrollment, video), json=past_end, headers=headers)).status == 422
    assert await recorded(db, enrollment) == (0, 0)
    assert (
        await client.put(progress_url(enrollment, video), json={"time_spent_seconds": 4 * 3600}, headers=headers)
    ).status == 200
    for lesson in (draft, elsewhere):
        refused = await client.put(progress_url(enrollment, lesson), json={"time_spent_seconds": 9}, headers=headers)
        assert refused.status == 404
        assert (await client.post(complete_url(enrollment, lesson), headers=headers)).status == 404
    assert await recorded(db, enrollment) == (4 * 3600, 1)


async def test_only_the_studying_student_reports_progress(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    student, headers = await signed_in(client, db)
    _, stranger = await signed_in(client, db)
    course = await make_course(db, owner, is_published=True, lessons=1)
    (lesson,) = await course_lessons(db, course)
    enrollment = await make_enrollment(db, student, course)
    spent = {"time_spent_seconds": 5}
    assert (await client.put(progress_url(enrollment, lesson), json=spent, headers=stranger)).status == 404
    assert (await client.put(progress_url(enrollment, lesson), json=spent, headers=owner_headers)).status == 403
    assert (await client.post(complete_url(enrollment, lesson), headers=owner_headers)).status == 403
    assert (await client.put(progress_url(enrollment, lesson), json=spent)).status == 401
    assert await recorded(db, enrollment) == (0, 0)  # nobody but the student wrote anything
    dropped = await make_enrollment(
        db, student, await make_course(db, owner, is_published=True, lessons=1), status="dropped"
    )
    (other_lesson,) = await course_lessons(db, {"id": dropped["course_id"]})
    refused = await client.put(progress_url(dropped, other_lesson), json={"time_spent_seconds": 5}, headers=headers)
    assert refused.status == 409 and refused.content_type == PROBLEM
    assert await recorded(db, dropped) == (0, 0)


async def test_fifty_concurrent_reports_from_two_devices_leave_exact_counters(client: Any, db: Database) -> None:
    student = await make_user(db)
    phone = bearer((await login(client, student["email"]))["access_token"])
    laptop = bearer((await login(client, student["email"]))["access_token"])
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=10)
    all_lessons = await course_lessons(db, course)
    enrollment = await make_enrollment(db, student, course)
    rng = random.Random(5)
    reports = []
    for i in range(50):
        lesson = all_lessons[i % 7]  # lessons 8-10 are never touched: the course cannot complete
        body: dict[str, Any] = {"time_spent_seconds": rng.randint(0, 900), "last_position_seconds": rng.randint(0, 300)}
        if i % 10 == 3:
            body["completion_percentage"] = 100
        else:
            body["completion_percentage"] = rng.randint(0, 99)
        reports.append((lesson, body, phone if i % 2 else laptop))

    responses = await asyncio.gather(
        *(client.put(progress_url(enrollment, lesson), json=body, headers=device) for lesson, body, device in reports)
    )
    assert [r.status for r in responses] == [200] * 50

    completed_lessons = {lesson["id"] for lesson, body, _ in reports if body["completion_percentage"] == 100}
    detail = await (await client.get(f"/api/v1/enrollments/{enrollment['id']}", headers=phone)).json()
    assert detail["total_time_spent_seconds"] == sum(body["time_spent_seconds"] for _, body, _ in reports)
    assert detail["completed_lessons_count"] == len(completed_lessons) == 5
    assert detail["total_lessons_count"] == 10 and detail["progress_percentage"] == "50.00"
    assert detail["status"] == "active"
    per_lesson = {p["lesson_id"]: p for p in detail["lessons"]}
    for lesson in all_lessons[:7]:
        mine = [body for other, body, _ in reports if other["id"] == lesson["id"]]
        progress = per_lesson[str(lesson["id"])]
        assert progress["time_spent_seconds"] == sum(b["time_spent_seconds"] for b in mine)
        assert float(progress["completion_percentage"]) == max(b["completion_percentage"] for b in mine)
        assert (progress["status"] == "completed") == (lesson["id"] in completed_lessons)
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(lesson_progress)) == 7


async def test_the_last_lesson_completes_the_course_once(inline_client: Any, db: Database, smtp_server: Any) -> None:
    client = inline_client
    events = collect_events(client.app)
    student, headers = await signed_in(client, db, full_name="Ada Learner")
    course = await make_course(
        db, await make_user(db, role="instructor"), title="Statistics", is_published=True, lessons=2
    )
    first, second = await course_lessons(db, course)
    enrollment = await make_enrollment(db, student, course)

    body = await (await client.post(complete_url(enrollment, first), headers=headers)).json()
    assert body["enrollment"]["progress_percentage"] == "50.00" and body["enrollment"]["status"] == "active"
    body = await (await client.post(complete_url(enrollment, second), headers=headers)).json()
    assert body["enrollment"]["progress_percentage"] == "100.00" and body["enrollment"]["status"] == "completed"
    assert body["enrollment"]["completed_at"] is not None
    # Completed students still record study time, but the course completes only once.
    again = await client.put(progress_url(enrollment, first), json={"time_spent_seconds": 20}, headers=headers)
    assert again.status == 200
    assert (await client.post(complete_url(enrollment, second), headers=headers)).status == 200

    # The completion email, and the certificate's (the job issued it, PDF attached).
    by_template = {m.message["X-LMS-Template"]: m for m in smtp_server.messages}
    assert sorted(by_template) == ["certificate_ready", "course_completion"] and len(smtp_server.messages) == 2
    mail = by_template["course_completion"]
    assert mail.rcpt_tos == [student["email"]] and "Statistics" in mail.message.get_body(("plain",)).get_content()
    async with db.connection() as conn:
        logged = await conn.fetch_one(select(email_log).where(email_log.c.template == "course_completion"))
        assert logged is not None
        assert logged["message_id"] == f"<course-completion-{enrollment['id']}@lms>"
        certificate = await conn.fetch_one(select(certificates))
    assert certificate is not None and certificate["status"] == "issued"
    assert certificate["enrollment_id"] == enrollment["id"] and certificate["student_id"] == student["id"]
    assert [type(e) for e in events] == [LessonProgressChanged, LessonProgressChanged, CourseCompleted,
                                         LessonProgressChanged, LessonProgressChanged]  # fmt: skip
    assert events[1] == LessonProgressChanged(
        course_id=course["id"], enrollment_id=enrollment["id"], student_id=student["id"], lesson_id=second["id"],
        completion_percentage=events[1].completion_percentage, progress_percentage=events[1].progress_percentage,
        completed=True,
    )  # fmt: skip
    assert str(events[1].progress_percentage) == "100.00"
    assert events[2] == CourseCompleted(
        course_id=course["id"], enrollment_id=enrollment["id"], student_id=student["id"]
    )


async def test_adding_and_removing_lessons_recomputes_progress(
    inline_client: Any, db: Database, redis: Any, smtp_server: Any
) -> None:
    client = inline_client
    owner, owner_headers = await signed_in(client, db, role="instructor")
    student, headers = await signed_in(client, db)
    bystander = await make_user(db)
    course = await make_course(db, owner, is_published=True, lessons=3)
    first, second, third = await course_lessons(db, course)
    enrollment = await make_enrollment(db, student, course)
    dropped = await make_enrollment(db, bystander, course, status="dropped")
    await client.post(complete_url(enrollment, first), headers=headers)

    async def state() -> tuple[str, int, int, str]:
        body = await (await client.get(f"/api/v1/enrollments/{enrollment['id']}", headers=headers)).json()
        return body["progress_percentage"], body["completed_lessons_count"], body["total_lessons_count"], body["status"]

    assert await state() == ("33.33", 1, 3, "active")
    added = await client.post(
        f"/api/v1/courses/{course['id']}/lessons",
        json={"title": "Bonus", "content_type": "text"},
        headers=owner_headers,
    )
    assert added.status == 201
    assert await state() == ("25.00", 1, 4, "active")
    draft = await client.post(
        f"/api/v1/courses/{course['id']}/lessons",
        json={"title": "Draft", "content_type": "text", "is_published": False},
        headers=owner_headers,
    )
    assert await state() == ("25.00", 1, 4, "active")
    await client.patch(
        f"/api/v1/lessons/{(await draft.json())['id']}", json={"is_published": True}, headers=owner_headers
    )
    assert await state() == ("20.00", 1, 5, "active")
    await client.patch(f"/api/v1/lessons/{first['id']}", json={"is_published": False}, headers=owner_headers)
    assert await state() == ("0.00", 0, 4, "active")
    await client.patch(f"/api/v1/lessons/{first['id']}", json={"is_published": True}, headers=owner_headers)
    for lesson_id in (second["id"], third["id"], (await added.json())["id"]):
        assert (await client.delete(f"/api/v1/lessons/{lesson_id}", headers=owner_headers)).status == 204
    assert await state() == ("50.00", 1, 2, "active")
    assert smtp_server.messages == []
    # The last lesson the student had not done disappears: 100%, completed by the job,
    # which tells the course's dashboards through the Socket.IO fan-out channel.
    fanout = redis.pubsub()
    channel = client.app[CONFIG].realtime.channel  # a course's broadcasts go on its room's channel
    await fanout.subscribe(channel, room_channel(channel, DASHBOARD_NAMESPACE, course_room(course["id"])))
    assert (await client.delete(f"/api/v1/lessons/{(await draft.json())['id']}", headers=owner_headers)).status == 204
    assert await state() == ("100.00", 1, 1, "completed")
    sent = sorted(m.message["X-LMS-Template"] for m in smtp_server.messages)
    assert sent == ["certificate_ready", "course_completion"]
    emitted = await completed_emits(fanout)
    await fanout.aclose()
    assert emitted == [
        {"room": f"course:{course['id']}", "namespace": "/dashboard", "data": [{
            "course_id": str(course["id"]), "enrollment_id": str(enrollment["id"]), "student_id": str(student["id"])}]}
    ]  # fmt: skip
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(certificates)) == 1
        untouched = await conn.fetch_one(
            select(lesson_progress).where(lesson_progress.c.enrollment_id == dropped["id"])
        )
    assert untouched is None

    # The job is idempotent: running it again changes nothing and sends nothing.
    assert await service.recalculate_course_progress(db, client.app[EFFECTS], course["id"]) == 1
    assert await state() == ("100.00", 1, 1, "completed")
    assert len(smtp_server.messages) == 2


async def completed_emits(fanout: Any, wait: float = 10.0) -> list[dict[str, Any]]:
    """The first course_completed emit on the fan-out channel (heartbeats and other emits skipped)."""
    found: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            while not found:
                message = await fanout.get_message(timeout=1.0)
                if message is None or message["type"] != "message":
                    continue
                with contextlib.suppress(ValueError):  # heartbeats are not JSON
                    emit = json.loads(message["data"])
                    if isinstance(emit, dict) and emit.get("event") == "course_completed":
                        found.append({key: emit.get(key) for key in ("room", "namespace", "data")})
    return found
