"""Analytics reads: course, lesson and quiz figures from the stats rows, series per local day.

The stats rows (lms/tables.py, "analytics aggregates") are kept current by
triggers inside every writing transaction, so these reads are exact and
cost a few index lookups whatever the course's size.

A course's figures are one prepared statement (:func:`course_figures`): the
database answers in well under a millisecond, so each extra round trip
through aiopg cost more than its query, and parsing and planning the
statement cost more than running it (lms/prepared.py). Each table of figures comes back as one array per
column (psycopg2 parses arrays natively, numerics as Decimal, so nothing is
rounded on the way) and is turned back into rows here.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by

from lms.analytics.window import END, START, Window, local_day
from lms.db import Connection, Row
from lms.enrollments.queries import percent, ratio, rounded_mean
from lms.payments.queries import COURSE_REVENUE
from lms.prepared import Prepared
from lms.tables import (
    course_progress_buckets,
    course_stats,
    courses,
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
        # Every quiz has its ten bucket rows (migration 0007's trigger); zeros all the same if one had none.
        func.coalesce(_QUIZ_BUCKETS, func.array_fill(0, literal_column("ARRAY[10]"))).label("buckets"),
        quizzes.c.created_at,
    )
    .outerjoin(quiz_stats, quiz_stats.c.quiz_id == quizzes.c.id)
    .where(quizzes.c.course_id == COURSE_ID)
    .order_by(quizzes.c.created_at, quizzes.c.id)
)
_ENROLLMENTS_PER_DAY = per_day_statement(
    select().select_from(enrollments).where(enrollments.c.course_id == COURSE_ID), enrollments.c.enrolled_at,
    func.count(),
)  # fmt: skip


def _as_arrays(rows: Select[Any], name: str, columns: tuple[str, ...], order: tuple[str, ...]) -> Any:
    """A LATERAL of one row: ``columns`` of ``rows`` each aggregated into an array ``{name}_{column}``, in ``order``."""
    sub = rows.order_by(None).subquery(f"{name}_rows")
    keys = [sub.c[k] for k in order]
    arrays = (func.array_agg(aggregate_order_by(sub.c[c], *keys)).label(f"{name}_{c}") for c in columns)
    return select(*arrays).lateral(f"{name}_arrays")


def _rows(row: Row, name: str, columns: tuple[str, ...]) -> list[Row]:
    """The rows that :func:`_as_arrays` folded into ``row`` (none: the arrays are NULL)."""
    arrays = [row[f"{name}_{c}"] or [] for c in columns]
    return [dict(zip(columns, values, strict=True)) for values in zip(*arrays, strict=True)]


_LESSON_COLUMNS = ("id", "title", "position", "started", "completed", "time_spent_sum")
_QUIZ_COLUMNS = ("id", "title", "attempts", "passed", "percentage_sum", "buckets")
_DAY_COLUMNS = ("day", "value")
_REVENUE_COLUMNS = ("currency", "gross", "refunded", "net", "payments")
_COURSE_COLUMNS = (
    courses.c.id, courses.c.slug, courses.c.title, courses.c.instructor_id, courses.c.is_published,
    courses.c.rating_average, courses.c.rating_count,
)  # fmt: skip

_PROGRESS_ARRAY = (
    select(func.array_agg(aggregate_order_by(course_progress_buckets.c.enrollments, course_progress_buckets.c.bucket)))
    .where(course_progress_buckets.c.course_id == COURSE_ID)
    .scalar_subquery()
)
_TABLES = [
    _as_arrays(_LESSONS, "lesson", _LESSON_COLUMNS, ("position",)),
    _as_arrays(_QUIZZES, "quiz", _QUIZ_COLUMNS, ("created_at", "id")),
    _as_arrays(_ENROLLMENTS_PER_DAY, "day", _DAY_COLUMNS, ("day",)),
    _as_arrays(COURSE_REVENUE, "revenue", _REVENUE_COLUMNS, ("currency",)),
]
_FROM: Any = courses.outerjoin(course_stats, course_stats.c.course_id == courses.c.id)
for _table in _TABLES:
    _FROM = _FROM.join(_table, true())
COURSE_FIGURES = Prepared(
    select(
        *_COURSE_COLUMNS,
        *(c.label(f"stats_{c.key}") for c in course_stats.c),
        _PROGRESS_ARRAY.label("progress_buckets"),
        *(c for table in _TABLES for c in table.c),
    )
    .select_from(_FROM)
    .where(courses.c.id == COURSE_ID),
    # Planning this statement cost more than running it: each connection plans it once.
    Window("UTC", date(2000, 1, 1), date(2000, 1, 1)).params() | {"course_id": uuid.UUID(int=0)},
)


async def course_figures(conn: Connection, course_id: uuid.UUID, window: Window) -> Row | None:
    """A course's row and every figure of its analytics, in one statement; None: no such course.

    The result carries the course's columns, its ``course_stats`` row as ``stats_*`` (None when it has
    none yet) and the tables below, read with :func:`progress_distribution`, :func:`lesson_figures`,
    :func:`quiz_figures`, :func:`course_enrollments_per_day` and :func:`revenue_rows`.
    """
    return await COURSE_FIGURES.fetch_one(conn, window.params() | {"course_id": course_id})


def stats_row(figures: Row) -> Row | None:
    """The course's ``course_stats`` row out of :func:`course_figures` (None: none yet)."""
    if figures["stats_course_id"] is None:
        return None
    return {c.key: figures[f"stats_{c.key}"] for c in course_stats.c}


def progress_distribution(figures: Row) -> list[dict[str, int]]:
    return distribution(dict(enumerate(figures["progress_buckets"] or [])))


def lesson_figures(figures: Row, studying: int) -> list[Row]:
    """The course's published lessons in order, each with its completion among studying enrollments."""
    # Straight from the arrays (no row dicts in between): 20 lessons were a tenth of the request's CPU.
    arrays = [figures[f"lesson_{c}"] or [] for c in _LESSON_COLUMNS]
    return [
        {
            "lesson_id": lesson_id,
            "title": title,
            "order": position,
            "started_count": started or 0,
            "completed_count": completed or 0,
            "completion_rate": percent(completed or 0, studying),
            # Over the students who opened the lesson.
            "average_time_spent_seconds": rounded_mean(spent or 0, started or 0),
        }
        for lesson_id, title, position, started, completed, spent in zip(*arrays, strict=True)
    ]


def quiz_figures(figures: Row) -> list[Row]:
    """Every quiz of the course (oldest first) with its graded attempts' figures."""
    return [
        {
            "quiz_id": r["id"],
            "title": r["title"],
            "attempts": int(r["attempts"] or 0),
            "average_percentage": ratio(r["percentage_sum"] or 0, r["attempts"] or 0),
            "pass_rate": percent(r["passed"] or 0, r["attempts"] or 0),
            "distribution": distribution(dict(enumerate(r["buckets"]))),
        }
        for r in _rows(figures, "quiz", _QUIZ_COLUMNS)
    ]


def course_enrollments_per_day(figures: Row, window: Window) -> list[dict[str, Any]]:
    """Enrollments of the course by the local day of ``enrolled_at`` (every status), zeros included."""
    found = {r["day"]: int(r["value"]) for r in _rows(figures, "day", _DAY_COLUMNS)}
    return [{"date": d, "count": found.get(d, 0)} for d in window.days]


def revenue_rows(figures: Row) -> list[Row]:
    """The course's money collected, all time, per currency (rows of ``payments.COURSE_REVENUE``)."""
    return _rows(figures, "revenue", _REVENUE_COLUMNS)
