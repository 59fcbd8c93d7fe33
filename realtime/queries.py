"""The few reads the live side makes."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from lms.db import Connection
from lms.tables import courses, enrollments

# Enrollments that make a student "of the course" for presence.
PRESENT_STATUSES = ("active", "completed")


async def course_instructor(conn: Connection, course_id: uuid.UUID) -> tuple[bool, uuid.UUID | None]:
    """(exists, instructor id) of a course."""
    row = await conn.fetch_one(select(courses.c.instructor_id).where(courses.c.id == course_id))
    return (False, None) if row is None else (True, row["instructor_id"])


async def student_course_ids(conn: Connection, student_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch_all(
        select(enrollments.c.course_id).where(
            enrollments.c.student_id == student_id, enrollments.c.status.in_(PRESENT_STATUSES)
        )
    )
    return [row["course_id"] for row in rows]
