"""A course's per-lesson and per-student tables as CSV (``?format=csv&table=...``).

The student table is streamed in batches read by key (enrollment id), so a
course of any size is exported in constant memory. Times are ISO 8601 in the
requested zone.
"""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, true

from lms.analytics.students import GRADED
from lms.api.spreadsheets import cell, csv_text
from lms.db import Connection, Database, Row
from lms.tables import enrollments, quiz_attempts, users

LESSON_COLUMNS = [
    "order", "lesson_id", "title", "started_count", "completed_count", "completion_rate", "average_time_spent_seconds",
]  # fmt: skip
STUDENT_COLUMNS = [
    "enrollment_id", "student_id", "full_name", "email", "status", "progress_percentage", "completed_lessons_count",
    "total_lessons_count", "total_time_spent_seconds", "enrolled_at", "started_at", "last_accessed_at",
    "completed_at", "quiz_attempts", "quiz_average_percentage", "rating",
]  # fmt: skip
BATCH = 500


def lesson_rows(lessons: list[Row]) -> list[list[Any]]:
    return [LESSON_COLUMNS] + [
        [lesson["order"], lesson["lesson_id"], cell(lesson["title"]), lesson["started_count"],
         lesson["completed_count"], lesson["completion_rate"], lesson["average_time_spent_seconds"]]
        for lesson in lessons
    ]  # fmt: skip


async def student_batch(conn: Connection, course_id: uuid.UUID, after: uuid.UUID | None) -> list[Row]:
    quiz = (
        select(func.count().label("attempts"), func.round(func.avg(quiz_attempts.c.percentage), 2).label("average"))
        .where(quiz_attempts.c.enrollment_id == enrollments.c.id, GRADED)
        .lateral("quiz")
    )
    conditions = [enrollments.c.course_id == course_id]
    if after is not None:
        conditions.append(enrollments.c.id > after)
    return await conn.fetch_all(
        select(enrollments, users.c.full_name, users.c.email, quiz.c.attempts, quiz.c.average)
        .join(users, users.c.id == enrollments.c.student_id)
        .outerjoin(quiz, true())
        .where(*conditions)
        .order_by(enrollments.c.id)
        .limit(BATCH)
    )


def _when(value: datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).isoformat()


def student_row(r: Row, zone: zoneinfo.ZoneInfo) -> list[Any]:
    return [
        r["id"], r["student_id"], cell(r["full_name"]), cell(r["email"]), r["status"], r["progress_percentage"],
        r["completed_lessons_count"], r["total_lessons_count"], r["total_time_spent_seconds"],
        _when(r["enrolled_at"], zone), _when(r["started_at"], zone), _when(r["last_accessed_at"], zone),
        _when(r["completed_at"], zone), int(r["attempts"] or 0), cell(r["average"]), cell(r["rating"]),
    ]  # fmt: skip


async def stream_students(
    request: web.Request, db: Database, course_id: uuid.UUID, tz: str, filename: str
) -> web.StreamResponse:
    response = csv_response(filename)
    await response.prepare(request)
    async for chunk in _student_chunks(db, course_id, zoneinfo.ZoneInfo(tz)):
        await response.write(chunk.encode())
    await response.write_eof()
    return response


async def _student_chunks(db: Database, course_id: uuid.UUID, zone: zoneinfo.ZoneInfo) -> AsyncIterator[str]:
    yield csv_text([STUDENT_COLUMNS])
    after: uuid.UUID | None = None
    while True:
        # A connection per batch: a slow reader does not hold one for the whole export.
        async with db.connection() as conn:
            rows = await student_batch(conn, course_id, after)
        if not rows:
            return
        yield csv_text(student_row(r, zone) for r in rows)
        after = rows[-1]["id"]


def csv_response(filename: str, text: str | None = None) -> web.StreamResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if text is not None:
        return web.Response(text=text, content_type="text/csv", charset="utf-8", headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "text/csv"
    response.charset = "utf-8"
    return response
