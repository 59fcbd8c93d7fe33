"""Analytics reads: course, lesson and quiz figures from the stats rows, series per local day.

The stats rows (lms/tables.py, "analytics aggregates") are kept current by
triggers inside every writing transaction, so these reads are exact and
cost a few index lookups whatever the course's size.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from lms.analytics.window import END, START, Window, local_day
from lms.db import Connection, Row
from lms.enrollments.queries import percent, ratio
from lms.tables import (
    course_progress_buckets,
    enrollments,
    lesson_stats,
    lessons,
    quiz_score_buckets,
    quiz_stats,
    quizzes,
)

BUCKETS = 10


def distribution(counts: dict[int, int]) -> list[dict[str, int]]:
    """Ten buckets of ten points: [0, 10), [10, 20) ... [90, 100]."""
    return [{"lower": b * 10, "upper": b * 10 + 10, "count": int(counts.get(b, 0))} for b in range(BUCKETS)]


def per_day_statement(scope: Select[Any], at: Any, value: Any) -> Select[Any]:
    """``value`` per local day of ``at`` within the window, for ``scope`` (a SELECT with its FROM and WHERE).

    Built once per series; run with :func:`per_day` and the window's parameters.
    """
    day = local_day(at).label("day")
    return scope.add_columns(day, value.label("value")).where(at >= START, at < END).group_by(literal_column("day"))


async def per_day(
    conn: Connection, window: Window, stmt: Select[Any], params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The series' value for each of the window's days (zeros included)."""
    rows = await conn.fetch_all(stmt, window.params() | (params or {}))
    found: dict[date, Any] = {r["day"]: r["value"] for r in rows}
    return [{"date": d, "value": found.get(d, 0)} for d in window.days]


# --- a course ------------------------------------------------------------------
# Built once, run with {"course_id": ...}: a course's figures are a few index reads.

COURSE_ID = bindparam("course_id", type_=lessons.c.course_id.type)

_PROGRESS_BUCKETS = select(course_progress_buckets.c.bucket, course_progress_buckets.c.enrollments).where(
    course_progress_buckets.c.course_id == COURSE_ID
)
_LESSONS = (
    select(
        lessons.c.id, lessons.c.title, lessons.c.position, lesson_stats.c.started, lesson_stats.c.completed,
        lesson_stats.c.time_spent_sum,
    )
    .outerjoin(lesson_stats, lesson_stats.c.lesson_id == lessons.c.id)
    .where(lessons.c.course_id == COURSE_ID, lessons.c.is_published)
    .order_by(lessons.c.position)
)  # fmt: skip
_QUIZ_BUCKETS = (
    select(func.array_agg(aggregate_order_by(quiz_score_buckets.c.attempts, quiz_score_buckets.c.bucket)))
    .where(quiz_score_buckets.c.quiz_id == quizzes.c.id)
    .scalar_subquery()
)
_QUIZZES = (
    select(
        quizzes.c.id,
        quizzes.c.title,
        quiz_stats.c.attempts,
        quiz_stats.c.passed,
        quiz_stats.c.percentage_sum,
        _QUIZ_BUCKETS.label("buckets"),
    )
    .outerjoin(quiz_stats, quiz_stats.c.quiz_id == quizzes.c.id)
    .where(quizzes.c.course_id == COURSE_ID)
    .order_by(quizzes.c.created_at, quizzes.c.id)
)
_ENROLLMENTS_PER_DAY = per_day_statement(
    select().select_from(enrollments).where(enrollments.c.course_id == COURSE_ID), enrollments.c.enrolled_at,
    func.count(),
)  # fmt: skip


async def progress_distribution(conn: Connection, course_id: uuid.UUID) -> list[dict[str, int]]:
    rows = await conn.fetch_all(_PROGRESS_BUCKETS, {"course_id": course_id})
    return distribution({r["bucket"]: r["enrollments"] for r in rows})


async def lesson_figures(conn: Connection, course_id: uuid.UUID, studying: int) -> list[Row]:
    """The course's published lessons in order, each with its completion among studying enrollments."""
    rows = await conn.fetch_all(_LESSONS, {"course_id": course_id})
    return [
        {
            "lesson_id": r["id"],
            "title": r["title"],
            "order": r["position"],
            "started_count": int(r["started"] or 0),
            "completed_count": int(r["completed"] or 0),
            "completion_rate": percent(r["completed"] or 0, studying),
            # Over the students who opened the lesson.
            "average_time_spent_seconds": int(ratio(r["time_spent_sum"] or 0, r["started"] or 0, Decimal(1))),
        }
        for r in rows
    ]


async def quiz_figures(conn: Connection, course_id: uuid.UUID) -> list[Row]:
    """Every quiz of the course (oldest first) with its graded attempts' figures."""
    rows = await conn.fetch_all(_QUIZZES, {"course_id": course_id})
    return [
        {
            "quiz_id": r["id"],
            "title": r["title"],
            "attempts": int(r["attempts"] or 0),
            "average_percentage": ratio(r["percentage_sum"] or 0, r["attempts"] or 0),
            "pass_rate": percent(r["passed"] or 0, r["attempts"] or 0),
            "distribution": distribution(dict(enumerate(r["buckets"] or []))),
        }
        for r in rows
    ]


async def course_enrollments_per_day(conn: Connection, course_id: uuid.UUID, window: Window) -> list[dict[str, Any]]:
    """Enrollments of the course by the local day of ``enrolled_at`` (every status)."""
    days = await per_day(conn, window, _ENROLLMENTS_PER_DAY, {"course_id": course_id})
    return [{"date": d["date"], "count": int(d["value"])} for d in days]
