"""Enrollments, lesson progress and reviews: plain async queries taking a connection.

Counters are never read, changed in Python and written back: every change is
one statement, and a statement that derives counters from other rows runs
after the enrollment row is locked, so that it sees every committed change.
"""

from __future__ import annotations

import functools
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, bindparam, case, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from lms.db import Connection, Row
from lms.enrollments.studying import STUDYING, studying_count
from lms.prepared import Prepared
from lms.tables import ENROLLMENT_STATUSES, courses, enrollments, lesson_progress, lessons, users
from lms.tables import course_stats as course_stats_table

CENT = Decimal("0.01")

COURSE_SUMMARY = {
    "id": courses.c.id,
    "title": courses.c.title,
    "slug": courses.c.slug,
    "thumbnail_url": courses.c.thumbnail_url,
    "instructor_id": courses.c.instructor_id,
}
STUDENT_SUMMARY = {"id": users.c.id, "full_name": users.c.full_name, "email": users.c.email}


def _labelled(prefix: str, columns: dict[str, Any]) -> list[Any]:
    return [column.label(f"{prefix}__{name}") for name, column in columns.items()]


def nest(row: Row, prefix: str, *, drop: tuple[str, ...] = ()) -> Row:
    """``{"course__title": ...}`` → ``{"course": {"title": ...}}``, without the ``drop`` columns."""
    outer, inner = _nesting(tuple(row), prefix, drop)
    return {k: row[k] for k in outer} | {prefix: {short: row[k] for k, short in inner}}


@functools.lru_cache(maxsize=256)
def _nesting(
    columns: tuple[str, ...], prefix: str, drop: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    # Worked out once per statement's columns, not once per row (a page of 20
    # rows of 30 columns spent a tenth of its time here).
    marker = prefix + "__"
    outer = tuple(k for k in columns if not k.startswith(marker) and k not in drop)
    inner = tuple((k, k[len(marker) :]) for k in columns if k.startswith(marker))
    return outer, inner


def published_lessons_count(course_id: Any) -> Any:
    return (
        select(func.count())
        .select_from(lessons)
        .where(lessons.c.course_id == course_id, lessons.c.is_published)
        .scalar_subquery()
    )


# --- enrolling ---------------------------------------------------------------


async def find_enrollment(conn: Connection, *, student_id: uuid.UUID, course_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(
        select(enrollments).where(enrollments.c.student_id == student_id, enrollments.c.course_id == course_id)
    )


async def enroll(conn: Connection, *, student_id: uuid.UUID, course_id: uuid.UUID) -> Row | None:
    """An active enrollment: new, or a dropped/expired one re-activated. None if already studying.

    The unique (student_id, course_id) constraint decides between concurrent
    requests: ON CONFLICT waits for the other insert and then updates nothing.
    """
    stmt = pg_insert(enrollments).values(
        student_id=student_id,
        course_id=course_id,
        status="active",
        total_lessons_count=published_lessons_count(course_id),
    )
    stmt = stmt.on_conflict_do_update(
        constraint="uq_enrollments_student_id_course_id",
        set_={"status": "active", "enrolled_at": func.now(), "completed_at": None},
        where=enrollments.c.status.notin_(STUDYING),
    )
    return await conn.fetch_one(stmt.returning(*enrollments.c, literal_column("(xmax = 0)").label("created")))


# --- reading -----------------------------------------------------------------


# Built once (hot reads: every progress report, every "my courses"): building costs more than running.
_GET_ENROLLMENT = (
    select(enrollments, *_labelled("course", COURSE_SUMMARY))
    .join(courses, courses.c.id == enrollments.c.course_id)
    .where(enrollments.c.id == bindparam("enrollment_id", type_=enrollments.c.id.type))
)


def _student_enrollments(with_status: bool) -> tuple[Prepared, Any]:
    conditions = [enrollments.c.student_id == bindparam("student_id", type_=enrollments.c.student_id.type)]
    if with_status:
        conditions.append(enrollments.c.status == bindparam("status", type_=enrollments.c.status.type))
    page = (
        select(enrollments, *_labelled("course", COURSE_SUMMARY), func.count().over().label("total"))
        .join(courses, courses.c.id == enrollments.c.course_id)
        .where(*conditions)
        .order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    example = {"student_id": uuid.UUID(int=0), "limit": 1, "offset": 0} | ({"status": "active"} if with_status else {})
    return Prepared(page, example), select(func.count()).select_from(enrollments).where(*conditions)


# A page of a student's enrollments carries the count of all of them (one round trip); prepared once per
# connection, as PostgreSQL's planning of the join cost more than running it (bench/learning.py).
_STUDENT_ENROLLMENTS = {with_status: _student_enrollments(with_status) for with_status in (False, True)}


async def get_enrollment(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    """The enrollment with its course summary (``course``)."""
    row = await conn.fetch_one(_GET_ENROLLMENT, {"enrollment_id": enrollment_id})
    return None if row is None else nest(row, "course")


async def lesson_progress_of(conn: Connection, enrollment_id: uuid.UUID) -> list[Row]:
    return await conn.fetch_all(
        select(lesson_progress)
        .join(lessons, lessons.c.id == lesson_progress.c.lesson_id)
        .where(lesson_progress.c.enrollment_id == enrollment_id)
        .order_by(lessons.c.position)
    )


async def list_student_enrollments(
    conn: Connection, *, student_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    page, count = _STUDENT_ENROLLMENTS[status is not None]
    params = {"student_id": student_id} | ({} if status is None else {"status": status})
    rows = await page.fetch_all(conn, params | {"limit": limit, "offset": offset})
    if not rows and offset > 0:  # past the last page: the count alone
        return [], int(await conn.fetch_val(count, params))
    # Rows as they come, the course's columns labelled course__*: page_json nests them as it writes them.
    return rows, int(rows[0]["total"] if rows else 0)


async def list_course_enrollments(
    conn: Connection, *, course_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    conditions = [enrollments.c.course_id == course_id]
    if status is not None:
        conditions.append(enrollments.c.status == status)
    total = await conn.fetch_val(select(func.count()).select_from(enrollments).where(*conditions))
    rows = await conn.fetch_all(
        select(enrollments, *_labelled("student", STUDENT_SUMMARY))
        .join(users, users.c.id == enrollments.c.student_id)
        .where(*conditions)
        .order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [nest(r, "student") for r in rows], int(total)


def percent(part: Any, whole: Any) -> Decimal:
    """``part`` of ``whole`` in percent, two decimals, half up; 0.00 of nothing."""
    if type(part) is int and type(whole) is int and part >= 0 and whole > 0:
        # Counts (most calls): hundredths of a percent in integers, half up, in a third of the Decimal time.
        return Decimal((20_000 * part + whole) // (2 * whole)).scaleb(-2)
    return ratio(Decimal(part) * 100, whole, CENT)


def rounded_mean(total: int, count: int) -> int:
    """``total / count`` of non-negative integers, rounded half up to an integer; 0 when ``count`` is 0."""
    return (2 * total + count) // (2 * count) if count else 0


def ratio(total: Any, count: Any, quantum: Decimal = CENT) -> Decimal:
    """``total / count`` rounded half up (as PostgreSQL's round()); 0 when ``count`` is 0."""
    if not count:
        return Decimal(0).quantize(quantum)
    return (Decimal(total) / Decimal(count)).quantize(quantum, rounding=ROUND_HALF_UP)


async def course_stats(conn: Connection, course_id: uuid.UUID) -> Row:
    """The course's enrollment figures, from its stats row (kept current by triggers in each write).

    ``/courses/{id}/enrollments/stats`` and ``/analytics/courses/{id}`` both
    answer with these. Averages are over studying (active and completed)
    enrollments; a course without a stats row (none yet) has zeros.
    """
    row = await conn.fetch_one(_COURSE_STATS, {"course_id": course_id})
    return stats_figures(course_id, row)


_COURSE_STATS = select(course_stats_table).where(course_stats_table.c.course_id == bindparam("course_id"))


def stats_figures(course_id: uuid.UUID, row: Row | None) -> Row:
    """A ``course_stats`` row (None: no enrollments yet) as the API's figures."""
    counts = {status: int(row[status]) if row and row[status] is not None else 0 for status in ENROLLMENT_STATUSES}
    studying = studying_count(counts)
    return {
        "course_id": course_id,
        "total_enrollments": sum(counts.values()),
        "by_status": counts,
        "completion_rate": percent(counts["completed"], studying),
        "average_progress": ratio(row["progress_sum"] if row else 0, studying),
        "average_time_spent_seconds": rounded_mean(row["time_spent_sum"] if row else 0, studying),
    }


# --- changing status ---------------------------------------------------------


async def drop(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    """Active or awaiting payment → dropped; None when it is in another state."""
    return await conn.fetch_one(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id, enrollments.c.status.in_(("active", "pending_payment", "dropped")))
        .values(status="dropped")
        .returning(enrollments)
    )


# --- progress ----------------------------------------------------------------


async def get_course_lesson(conn: Connection, *, lesson_id: uuid.UUID, course_id: uuid.UUID) -> Row | None:
    """A published lesson of this course (what a student may record progress on)."""
    return await conn.fetch_one(_COURSE_LESSON, {"lesson_id": lesson_id, "course_id": course_id})


# The progress statements are built once: building a Core construct this size
# costs more than running it (about 2 ms against 0.3 ms), and a progress report
# is the hottest write of the platform. Values travel as bound parameters.
_ENROLLMENT_ID = bindparam("enrollment_id", type_=enrollments.c.id.type)
_COURSE_ID = bindparam("course_id", type_=enrollments.c.course_id.type)

_COURSE_LESSON = select(lessons.c.id, lessons.c.duration_seconds).where(
    lessons.c.id == bindparam("lesson_id", type_=lessons.c.id.type),
    lessons.c.course_id == _COURSE_ID,
    lessons.c.is_published,
)
_ADD_STUDY_TIME = (
    update(enrollments)
    .where(enrollments.c.id == _ENROLLMENT_ID, enrollments.c.status.in_(STUDYING))
    .values(
        total_time_spent_seconds=enrollments.c.total_time_spent_seconds + bindparam("seconds", type_=BigInteger),
        last_accessed_at=func.now(),
        started_at=func.coalesce(enrollments.c.started_at, func.now()),
    )
    .returning(enrollments)
)


def _record_lesson_statement(studying: Any = None) -> Any:
    """The lesson progress upsert; with ``studying`` (a CTE of the enrollment row), for that enrollment."""
    lp = lesson_progress
    status = bindparam("status", type_=lp.c.status.type)
    position = bindparam("position", type_=lp.c.last_position_seconds.type)
    values = {
        "enrollment_id": _ENROLLMENT_ID if studying is None else studying.c.id,
        "lesson_id": bindparam("lesson_id", type_=lp.c.lesson_id.type),
        "status": status,
        "started_at": func.now(),
        "completed_at": case((status == "completed", func.now())),
        "time_spent_seconds": bindparam("seconds", type_=BigInteger),
        "last_position_seconds": func.coalesce(position, 0),
        "completion_percentage": func.coalesce(bindparam("percentage", type_=lp.c.completion_percentage.type), 0),
    }
    if studying is None:
        stmt = pg_insert(lp).values(values)
    else:
        # The id explicitly: a prepared statement would fix a Python-side default once for every call.
        values = {"id": func.gen_random_uuid(), **values}
        stmt = pg_insert(lp).from_select(list(values), select(*values.values()).select_from(studying))
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        constraint="uq_lesson_progress_enrollment_id_lesson_id",
        set_={
            "time_spent_seconds": lp.c.time_spent_seconds + new.time_spent_seconds,
            # Absent from the report: the position stays where it was.
            "last_position_seconds": func.coalesce(position, lp.c.last_position_seconds),
            "completion_percentage": func.greatest(lp.c.completion_percentage, new.completion_percentage),
            "status": case(
                ((lp.c.status == "completed") | (new.status == "completed"), "completed"), else_="in_progress"
            ),
            "started_at": func.coalesce(lp.c.started_at, new.started_at),
            "completed_at": func.coalesce(lp.c.completed_at, new.completed_at),
            "updated_at": func.now(),
        },
    ).returning(lp)


def _report_statement() -> Prepared:
    """A report that completes no lesson, whole: every check, the study time and the upsert.

    One prepared statement instead of five round trips (the enrollment,
    the lesson, BEGIN + the study time, the upsert, COMMIT). The enrollment
    is updated only when the student is its own, it is studying and the
    lesson is a published lesson of its course the position fits in;
    otherwise nothing is written and no row comes back (the caller finds
    out why with the step-by-step path). The UPDATE takes the enrollment's
    row lock first, so reports from several devices still apply one at a time.
    """
    position = bindparam("position", type_=lesson_progress.c.last_position_seconds.type)
    lesson_fits = (
        select(lessons.c.id)
        .where(
            lessons.c.id == bindparam("lesson_id", type_=lessons.c.id.type),
            lessons.c.course_id == enrollments.c.course_id,
            lessons.c.is_published,
            position.is_(None) | lessons.c.duration_seconds.is_(None) | (position <= lessons.c.duration_seconds),
        )
        .exists()
    )
    studying = _ADD_STUDY_TIME.where(
        enrollments.c.student_id == bindparam("student_id", type_=enrollments.c.student_id.type), lesson_fits
    ).cte("studying")
    progress = _record_lesson_statement(studying).cte("progress")
    stmt = select(studying, *(c.label(f"lesson__{c.key}") for c in progress.c)).select_from(
        studying.join(progress, true())
    )
    example = {
        "student_id": uuid.UUID(int=0), "enrollment_id": uuid.UUID(int=0), "lesson_id": uuid.UUID(int=0),
        "status": "in_progress", "seconds": 0, "position": 0, "percentage": Decimal(0),
    }  # fmt: skip
    return Prepared(stmt, example)


def _refresh_statement(*, one: bool) -> Any:
    e = enrollments.alias("e")
    done = (
        select(func.count())
        .select_from(lesson_progress.join(lessons, lessons.c.id == lesson_progress.c.lesson_id))
        .where(
            lesson_progress.c.enrollment_id == e.c.id,
            lesson_progress.c.status == "completed",
            lessons.c.is_published,
        )
        .scalar_subquery()
    )
    # One enrollment: its course's lessons; a whole course: counted once (an InitPlan).
    total = published_lessons_count(e.c.course_id if one else _COURSE_ID)
    # MATERIALIZED: each count is taken once per enrollment; inlined, the
    # planner would repeat the subqueries for every place they are used.
    counts = (
        select(
            e.c.id,
            e.c.status.label("old_status"),
            total.label("total"),
            done.label("done"),
        )
        .where(e.c.id == _ENROLLMENT_ID if one else and_(e.c.course_id == _COURSE_ID, e.c.status.in_(STUDYING)))
        .cte("counts")
        .prefix_with("MATERIALIZED")
    )
    done_capped = func.least(counts.c.done, counts.c.total)
    completes = and_(enrollments.c.status == "active", counts.c.total > 0, counts.c.done >= counts.c.total)
    return (
        update(enrollments)
        .where(enrollments.c.id == counts.c.id)
        .values(
            total_lessons_count=counts.c.total,
            completed_lessons_count=done_capped,
            progress_percentage=case(
                (counts.c.total == 0, 0), else_=func.round(done_capped * literal_column("100.0") / counts.c.total, 2)
            ),
            status=case((completes, "completed"), else_=enrollments.c.status),
            completed_at=case((completes, func.now()), else_=enrollments.c.completed_at),
        )
        .returning(enrollments, counts.c.old_status)
    )


_RECORD_LESSON = _record_lesson_statement()
# Public for bench/learning.py, which EXPLAINs its plain form.
REPORT = _report_statement()
_REFRESH_ONE = _refresh_statement(one=True)
_REFRESH_COURSE = _refresh_statement(one=False)


async def add_study_time(conn: Connection, enrollment_id: uuid.UUID, seconds: int) -> Row | None:
    """Adds the time and marks the access; locks the enrollment row until the transaction ends.

    Every progress change of one enrollment starts here, so reports from
    several devices are applied one after the other. None: not studying.
    """
    return await conn.fetch_one(_ADD_STUDY_TIME, {"enrollment_id": enrollment_id, "seconds": seconds})


def completes_lesson(percentage: Any) -> bool:
    """Whether a report completes its lesson (the only change that moves an enrollment's counters)."""
    return percentage is not None and percentage >= 100


async def record_lesson_progress(
    conn: Connection,
    *,
    enrollment_id: uuid.UUID,
    lesson_id: uuid.UUID,
    seconds: int,
    position: int | None,
    percentage: Any,
) -> Row:
    """One upsert: time adds up, the percentage never goes down, 100% completes the lesson."""
    done = completes_lesson(percentage)
    row = await conn.fetch_one(
        _RECORD_LESSON,
        {
            "enrollment_id": enrollment_id,
            "lesson_id": lesson_id,
            "status": "completed" if done else "in_progress",
            "seconds": seconds,
            "position": position,
            "percentage": percentage,
        },
    )
    assert row is not None
    return row


async def report_progress(
    conn: Connection,
    *,
    student_id: uuid.UUID,
    enrollment_id: uuid.UUID,
    lesson_id: uuid.UUID,
    seconds: int,
    position: int | None,
    percentage: Any,
) -> tuple[Row, Row] | None:
    """A report that completes no lesson, in one statement: (lesson progress, enrollment), or None.

    None: nothing was written (not the student's, not studying, no such
    lesson, the position past its end); :func:`record_lesson_progress` and
    the checks before it tell which.
    """
    assert not completes_lesson(percentage)
    row = await REPORT.fetch_one(
        conn,
        {
            "student_id": student_id, "enrollment_id": enrollment_id, "lesson_id": lesson_id,
            "status": "in_progress", "seconds": seconds, "position": position, "percentage": percentage,
        },
    )  # fmt: skip
    if row is None:
        return None
    enrollment = nest(row, "lesson")
    return enrollment.pop("lesson"), enrollment


async def refresh_progress(
    conn: Connection, *, enrollment_id: uuid.UUID | None = None, course_id: uuid.UUID | None = None
) -> list[Row]:
    """Re-derive counters and percentage from the lessons and lesson progress.

    For one enrollment or every studying enrollment of a course. All the
    course's published lessons done → ``completed`` (from ``active``).
    Returned rows carry ``old_status`` so the caller can tell who just
    completed. Callers hold the enrollment rows' locks (see
    :func:`add_study_time`, :func:`lock_course_enrollments`); the counts are
    then taken from a snapshot that has every committed change.
    """
    if enrollment_id is not None:
        return await conn.fetch_all(_REFRESH_ONE, {"enrollment_id": enrollment_id})
    return await conn.fetch_all(_REFRESH_COURSE, {"course_id": course_id})


async def lock_course_enrollments(conn: Connection, course_id: uuid.UUID) -> int:
    """Lock every studying enrollment of a course (in id order) before a course-wide refresh."""
    rows = await conn.fetch_all(
        select(enrollments.c.id)
        .where(enrollments.c.course_id == course_id, enrollments.c.status.in_(STUDYING))
        .order_by(enrollments.c.id)
        .with_for_update(key_share=True)
    )
    return len(rows)


async def completion_context(conn: Connection, enrollment_ids: list[uuid.UUID]) -> list[Row]:
    """What the completion email needs: the student and the course."""
    if not enrollment_ids:
        return []
    return await conn.fetch_all(
        select(
            enrollments.c.id.label("enrollment_id"),
            enrollments.c.course_id,
            enrollments.c.student_id,
            users.c.email,
            users.c.full_name,
            courses.c.title.label("course_title"),
            courses.c.slug.label("course_slug"),
        )
        .join(users, users.c.id == enrollments.c.student_id)
        .join(courses, courses.c.id == enrollments.c.course_id)
        .where(enrollments.c.id.in_(enrollment_ids))
    )


# --- reviews -----------------------------------------------------------------


async def set_review(conn: Connection, enrollment_id: uuid.UUID, *, rating: int, review: str | None) -> Row | None:
    """The enrollment's one review, replaced on every call; None when not studying."""
    return await conn.fetch_one(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id, enrollments.c.status.in_(STUDYING))
        .values(rating=rating, review=review, reviewed_at=func.now())
        .returning(enrollments)
    )


async def refresh_course_rating(conn: Connection, course_id: uuid.UUID) -> Row:
    """Average and count from the enrollments' ratings (caller holds the course row lock)."""
    rated = and_(enrollments.c.course_id == course_id, enrollments.c.rating.is_not(None))
    row = await conn.fetch_one(
        update(courses)
        .where(courses.c.id == course_id)
        .values(
            rating_count=select(func.count()).select_from(enrollments).where(rated).scalar_subquery(),
            rating_average=select(func.round(func.avg(enrollments.c.rating), 2)).where(rated).scalar_subquery(),
        )
        .returning(courses.c.rating_average, courses.c.rating_count)
    )
    assert row is not None
    return row
