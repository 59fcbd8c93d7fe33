"""A student's own figures: enrollments, quizzes, certificates, study days."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, select, true

from lms.analytics.queries import per_day, per_day_statement
from lms.analytics.window import Window, local_day
from lms.db import Connection, Row
from lms.enrollments.queries import COURSE_SUMMARY, nest, ratio
from lms.enrollments.studying import STUDYING
from lms.tables import ENROLLMENT_STATUSES, certificates, courses, enrollments, quiz_attempts, quizzes, study_activity

GRADED = and_(quiz_attempts.c.status == "graded", quiz_attempts.c.percentage.is_not(None))
RECENT_ATTEMPTS = 10
CONTINUE_LEARNING = 5


def _quiz_per_enrollment() -> Any:
    """Each enrollment's graded attempts (LATERAL: read through its index, per enrollment)."""
    return (
        select(
            func.count().label("attempts"),
            func.round(func.avg(quiz_attempts.c.percentage), 2).label("average"),
        )
        .where(quiz_attempts.c.enrollment_id == enrollments.c.id, GRADED)
        .lateral("quiz")
    )


async def enrollment_progress(
    conn: Connection, *, student_id: uuid.UUID, status: str | None, limit: int, offset: int, order: str = "enrolled"
) -> tuple[list[Row], int]:
    """The student's enrollments with their progress and quiz average; ``order``: enrolled or activity."""
    conditions = [enrollments.c.student_id == student_id]
    if status is not None:
        conditions.append(enrollments.c.status == status)
    quiz = _quiz_per_enrollment()
    sort = (
        [enrollments.c.last_accessed_at.desc().nulls_last(), enrollments.c.enrolled_at.desc()]
        if order == "activity"
        else [enrollments.c.enrolled_at.desc()]
    )
    total = await conn.fetch_val(select(func.count()).select_from(enrollments).where(*conditions))
    rows = await conn.fetch_all(
        select(
            enrollments,
            *[column.label(f"course__{name}") for name, column in COURSE_SUMMARY.items()],
            quiz.c.attempts,
            quiz.c.average,
        )
        .join(courses, courses.c.id == enrollments.c.course_id)
        .outerjoin(quiz, true())
        .where(*conditions)
        .order_by(*sort, enrollments.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [_progress(nest(r, "course")) for r in rows], int(total)


def _progress(row: Row) -> Row:
    return row | {
        "enrollment_id": row["id"],
        "quiz_attempts": int(row["attempts"] or 0),
        "quiz_average_percentage": row["average"],
    }


async def totals(conn: Connection, student_id: uuid.UUID) -> Row:
    studying = enrollments.c.status.in_(STUDYING)
    by_status = await conn.fetch_all(
        select(enrollments.c.status, func.count().label("n"))
        .where(enrollments.c.student_id == student_id)
        .group_by(enrollments.c.status)
    )
    sums = await conn.fetch_one(
        select(
            func.coalesce(func.sum(enrollments.c.completed_lessons_count), 0).label("lessons"),
            func.coalesce(func.sum(enrollments.c.total_time_spent_seconds), 0).label("seconds"),
            func.coalesce(func.sum(enrollments.c.progress_percentage).filter(studying), 0).label("progress"),
            func.count().filter(studying).label("studying"),
        ).where(enrollments.c.student_id == student_id)
    )
    assert sums is not None
    counts = dict.fromkeys(ENROLLMENT_STATUSES, 0) | {r["status"]: int(r["n"]) for r in by_status}
    return {
        "enrollments": sum(counts.values()),
        "by_status": counts,
        "lessons_completed": int(sums["lessons"]),
        "time_spent_seconds": int(sums["seconds"]),
        "average_progress": ratio(sums["progress"], sums["studying"]),
    }


async def quiz_history(conn: Connection, student_id: uuid.UUID) -> Row:
    mine = (quiz_attempts.c.student_id == student_id, GRADED)
    summary = await conn.fetch_one(
        select(
            func.count().label("attempts"),
            func.count().filter(quiz_attempts.c.is_passed).label("passed"),
            func.round(func.avg(quiz_attempts.c.percentage), 2).label("average"),
        ).where(*mine)
    )
    assert summary is not None
    recent = await conn.fetch_all(
        select(
            quiz_attempts.c.id.label("attempt_id"),
            quiz_attempts.c.quiz_id,
            quizzes.c.title.label("quiz_title"),
            quizzes.c.course_id,
            quiz_attempts.c.attempt_number,
            quiz_attempts.c.percentage,
            quiz_attempts.c.is_passed,
            quiz_attempts.c.graded_at,
        )
        .join(quizzes, quizzes.c.id == quiz_attempts.c.quiz_id)
        .where(*mine)
        .order_by(quiz_attempts.c.graded_at.desc().nulls_last(), quiz_attempts.c.id)
        .limit(RECENT_ATTEMPTS)
    )
    return {
        "attempts": int(summary["attempts"]),
        "passed": int(summary["passed"]),
        "average_percentage": summary["average"],
        "recent": recent,
    }


async def my_certificates(conn: Connection, student_id: uuid.UUID) -> list[Row]:
    return await conn.fetch_all(
        select(
            certificates.c.id,
            certificates.c.certificate_number,
            certificates.c.course_id,
            courses.c.title.label("course_title"),
            certificates.c.status,
            certificates.c.completion_date,
            certificates.c.issued_at,
            certificates.c.is_revoked,
        )
        .join(courses, courses.c.id == certificates.c.course_id)
        .where(certificates.c.student_id == student_id)
        .order_by(certificates.c.completion_date.desc(), certificates.c.id)
    )


_STUDENT_ID = bindparam("student_id", type_=study_activity.c.student_id.type)
_TIME_PER_DAY = per_day_statement(
    select().select_from(study_activity).where(study_activity.c.student_id == _STUDENT_ID),
    study_activity.c.bucket,
    func.sum(study_activity.c.seconds),
)
_ACTIVE_DAYS = (
    select(local_day(study_activity.c.bucket).label("day"))
    .where(study_activity.c.student_id == _STUDENT_ID, study_activity.c.reports > 0)
    .group_by(literal_column("day"))
    .order_by(literal_column("day").desc())
)


async def time_per_day(conn: Connection, student_id: uuid.UUID, window: Window) -> list[dict[str, Any]]:
    days = await per_day(conn, window, _TIME_PER_DAY, {"student_id": student_id})
    return [{"date": d["date"], "seconds": int(d["value"])} for d in days]


async def active_days(conn: Connection, student_id: uuid.UUID, tz: str) -> list[date]:
    """Every local day on which the student reported progress, newest first."""
    rows = await conn.fetch_all(_ACTIVE_DAYS, {"student_id": student_id, "tz": tz})
    return [r["day"] for r in rows]


def streak(days: list[date], today: date) -> Row:
    """Days in a row with progress: the current run (ending today or yesterday) and the longest."""
    if not days:
        return {"current_days": 0, "longest_days": 0, "last_active_date": None}
    runs: list[tuple[date, int]] = []  # (last day of the run, its length), newest first
    for day in days:
        if runs and runs[-1][0] - timedelta(days=runs[-1][1]) == day:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((day, 1))
    latest_end, latest_length = runs[0]
    current = latest_length if (today - latest_end).days <= 1 else 0
    return {"current_days": current, "longest_days": max(n for _, n in runs), "last_active_date": days[0]}
