"""What counts as enrolled: the one rule for "a student of this course".

A student *studies* a course while their enrollment is ``active`` or
``completed``: the lessons' content is open, the course's quizzes can be
taken, progress and reviews are recorded, they count as online on the
course's dashboard, and they can neither enroll again nor buy the course.
``pending_payment``, ``dropped`` and ``expired`` enrollments do not count.

REST routes, the Socket.IO namespaces and jobs all ask here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select

from lms.db import Connection, Row
from lms.tables import enrollments

STUDYING = ("active", "completed")


def studying_count(by_status: Mapping[str, int]) -> int:
    """How many study, from counts per status (a course's stats row, analytics' figures)."""
    return sum(by_status.get(status, 0) for status in STUDYING)


def studies(*, course_id: Any, student_id: Any) -> ColumnElement[bool]:
    """SQL: the student studies the course (either side may be a column, for correlated subqueries)."""
    return exists().where(
        and_(
            enrollments.c.course_id == course_id,
            enrollments.c.student_id == student_id,
            enrollments.c.status.in_(STUDYING),
        )
    )


async def studying_enrollment(conn: Connection, *, course_id: uuid.UUID, student_id: uuid.UUID) -> Row | None:
    """The student's enrollment in the course if it counts (id and status); else None."""
    return await conn.fetch_one(
        select(enrollments.c.id, enrollments.c.status).where(
            enrollments.c.course_id == course_id,
            enrollments.c.student_id == student_id,
            enrollments.c.status.in_(STUDYING),
        )
    )


async def studied_course_ids(conn: Connection, student_id: uuid.UUID) -> list[uuid.UUID]:
    """Every course the student studies."""
    rows = await conn.fetch_all(
        select(enrollments.c.course_id).where(
            enrollments.c.student_id == student_id, enrollments.c.status.in_(STUDYING)
        )
    )
    return [row["course_id"] for row in rows]
