"""Scheduled emails: the weekly progress report and reminders to inactive students.

Both fan out: they enqueue one ``send_email`` per recipient with a message id
derived from what the email is about, so a second run (a redelivery, a
second scheduler) sends nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Text, cast, func, literal, select
from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.db import Connection, Row
from lms.enrollments.service import course_url
from lms.tables import courses, email_log, enrollments, users

log = logging.getLogger(__name__)
tasks = TaskTable()

BATCH = 500


async def students_with_active_courses(conn: Connection, *, after: uuid.UUID | None, limit: int) -> list[Row]:
    """Active students with at least one active enrollment, by id (keyset pages)."""
    query = (
        select(users.c.id, users.c.email, users.c.full_name)
        .where(
            users.c.is_active,
            select(enrollments.c.id)
            .where(enrollments.c.student_id == users.c.id, enrollments.c.status == "active")
            .exists(),
        )
        .order_by(users.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(users.c.id > after)
    return await conn.fetch_all(query)


async def active_courses_of(conn: Connection, student_ids: list[uuid.UUID]) -> list[Row]:
    return await conn.fetch_all(
        select(enrollments.c.student_id, courses.c.title, enrollments.c.progress_percentage)
        .join(courses, courses.c.id == enrollments.c.course_id)
        .where(enrollments.c.student_id.in_(student_ids), enrollments.c.status == "active")
        .order_by(enrollments.c.student_id, courses.c.title)
    )


@tasks.task("weekly_progress", schedule="weekly_progress_cron", timeout_seconds=3600)
async def weekly_progress(res: Resources = TaskiqDepends(resources)) -> int:
    """One progress summary per active student, once per ISO week."""
    now = datetime.now(ZoneInfo(res.config.jobs.schedule_timezone))
    year, week, _ = now.isocalendar()
    sent = 0
    after: uuid.UUID | None = None
    while True:
        async with res.db.connection() as conn:
            students = await students_with_active_courses(conn, after=after, limit=BATCH)
            if not students:
                break
            rows = await active_courses_of(conn, [s["id"] for s in students])
        by_student: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for row in rows:
            by_student.setdefault(row["student_id"], []).append(
                {"title": row["title"], "progress_percentage": float(row["progress_percentage"])}
            )
        for student in students:
            await res.effects.email(
                "weekly_progress",
                to=student["email"],
                full_name=student["full_name"],
                user_id=student["id"],
                message_id=f"weekly_progress:{student['id']}:{year}-W{week:02d}",
                courses=by_student.get(student["id"], []),
            )
            sent += 1
        after = students[-1]["id"]
    log.info("weekly progress: %d email(s) queued for %d-W%02d", sent, year, week)
    return sent


def _reminder_key() -> Any:
    # One reminder per stretch of inactivity: the key names the last visit,
    # so a student who comes back and drifts off again is reminded again.
    last_seen = func.coalesce(enrollments.c.last_accessed_at, enrollments.c.enrolled_at)
    return (
        literal("course_reminder:")
        + cast(enrollments.c.id, Text)
        + literal(":")
        + func.to_char(func.timezone("UTC", last_seen), "YYYYMMDDHH24MISS")
    )


async def inactive_enrollments(
    conn: Connection, *, inactive_since: datetime, after: uuid.UUID | None, limit: int
) -> list[Row]:
    last_seen = func.coalesce(enrollments.c.last_accessed_at, enrollments.c.enrolled_at)
    key = _reminder_key().label("message_id")
    query = (
        select(
            enrollments.c.id,
            users.c.id.label("user_id"),
            users.c.email,
            users.c.full_name,
            courses.c.title,
            courses.c.slug,
            last_seen.label("last_seen"),
            key,
        )
        .join(users, users.c.id == enrollments.c.student_id)
        .join(courses, courses.c.id == enrollments.c.course_id)
        .where(
            enrollments.c.status == "active",
            enrollments.c.progress_percentage < 100,
            users.c.is_active,
            last_seen < inactive_since,
            ~select(email_log.c.id).where(email_log.c.message_id == _reminder_key()).exists(),
        )
        .order_by(enrollments.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(enrollments.c.id > after)
    return await conn.fetch_all(query)


@tasks.task("course_reminders", schedule="course_reminders_cron", timeout_seconds=3600)
async def course_reminders(res: Resources = TaskiqDepends(resources)) -> int:
    """Remind students who have not opened an active course for ``reminder_inactive_days``."""
    now = datetime.now(UTC)
    inactive_since = now - timedelta(days=res.config.jobs.reminder_inactive_days)
    sent = 0
    after: uuid.UUID | None = None
    while True:
        async with res.db.connection() as conn:
            rows = await inactive_enrollments(conn, inactive_since=inactive_since, after=after, limit=BATCH)
        if not rows:
            break
        for row in rows:
            await res.effects.email(
                "course_reminder",
                to=row["email"],
                full_name=row["full_name"],
                user_id=row["user_id"],
                message_id=row["message_id"],
                course_title=row["title"],
                course_url=course_url(res.effects, row["slug"]),
                days_inactive=(now - row["last_seen"]).days,
            )
            sent += 1
        after = rows[-1]["id"]
    log.info("course reminders: %d email(s) queued", sent)
    return sent

