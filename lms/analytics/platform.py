"""An instructor's courses side by side, and the platform as a whole."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union

from lms.analytics.queries import per_day, per_day_statement
from lms.analytics.window import END, START, Window
from lms.db import Connection, Row
from lms.enrollments.queries import percent, stats_figures
from lms.enrollments.studying import studying_count
from lms.payments import queries as payments
from lms.payments.schemas import figures
from lms.tables import ENROLLMENT_STATUSES, ROLES, course_stats, courses, enrollments, live_sessions, users


def _counts(row: Row | None) -> dict[str, int]:
    return {status: int(row[status]) if row and row[status] is not None else 0 for status in ENROLLMENT_STATUSES}


def revenue_totals(rows: list[Row]) -> list[dict[str, Any]]:
    """Revenue rows of several courses summed per currency."""
    sums: dict[str, dict[str, Any]] = {}
    for row in rows:
        into = sums.setdefault(row["currency"], {"currency": row["currency"], "gross": 0, "refunded": 0, "net": 0,
                                                  "payments": 0})  # fmt: skip
        for key in ("gross", "refunded", "net", "payments"):
            into[key] += row[key]
    return [figures(sums[c]) for c in sorted(sums)]


# --- an instructor -------------------------------------------------------------


async def instructor_overview(conn: Connection, instructor: Row) -> Row:
    instructor_id = instructor["id"]
    rows = await conn.fetch_all(
        select(
            courses.c.id,
            courses.c.title,
            courses.c.slug,
            courses.c.is_published,
            courses.c.rating_average,
            courses.c.rating_count,
            course_stats.c.progress_sum,
            course_stats.c.time_spent_sum,
            *[course_stats.c[s] for s in ENROLLMENT_STATUSES],
        )
        .outerjoin(course_stats, course_stats.c.course_id == courses.c.id)
        .where(courses.c.instructor_id == instructor_id)
        .order_by(courses.c.created_at.desc(), courses.c.id)
    )
    revenue = await payments.revenue_by_course(conn, start=None, end=None, instructor_id=instructor_id)
    students = await conn.fetch_one(
        select(
            func.count(func.distinct(enrollments.c.student_id)).label("students"),
            func.round(func.avg(enrollments.c.rating), 2).label("rating_average"),
            func.count(enrollments.c.rating).label("rating_count"),
        )
        .join(courses, courses.c.id == enrollments.c.course_id)
        .where(courses.c.instructor_id == instructor_id)
    )
    assert students is not None
    by_course: dict[uuid.UUID, list[Row]] = {}
    for r in revenue:
        by_course.setdefault(r["course_id"], []).append(r)
    items = []
    for row in rows:
        stats = stats_figures(row["id"], row)
        items.append(
            {
                "title": row["title"],
                "slug": row["slug"],
                "is_published": row["is_published"],
                **stats,
                "rating_average": row["rating_average"],
                "rating_count": row["rating_count"],
                "revenue": [figures(r) for r in by_course.get(row["id"], [])],
            }
        )
    completed = sum(i["by_status"]["completed"] for i in items)
    studying = sum(studying_count(i["by_status"]) for i in items)
    return {
        "instructor_id": instructor_id,
        "full_name": instructor["full_name"],
        "courses": items,
        "distinct_students": int(students["students"]),
        "totals": {
            "courses": len(items),
            "published_courses": sum(1 for i in items if i["is_published"]),
            "enrollments": sum(i["total_enrollments"] for i in items),
            "completed": completed,
            "completion_rate": percent(completed, studying),
            "rating_average": students["rating_average"],
            "rating_count": int(students["rating_count"]),
            "revenue": revenue_totals(revenue),
        },
    }


# --- the platform --------------------------------------------------------------


async def system_figures(conn: Connection, window: Window, now: datetime) -> Row:
    """Every figure of the system overview, computed from the tables (a snapshot's content)."""
    by_role = await conn.fetch_all(select(users.c.role, func.count().label("n")).group_by(users.c.role))
    roles = dict.fromkeys(ROLES, 0) | {r["role"]: int(r["n"]) for r in by_role}
    statuses = await conn.fetch_one(
        select(*[func.coalesce(func.sum(course_stats.c[s]), 0).label(s) for s in ENROLLMENT_STATUSES])
    )
    by_status = _counts(statuses)
    new_users = await per_day(conn, window, _NEW_USERS)
    new_enrollments = await per_day(conn, window, _NEW_ENROLLMENTS)
    bounds = await conn.fetch_one(select(START.label("start"), END.label("end")), window.params())
    assert bounds is not None
    revenue = await payments.revenue_by_currency(conn, start=bounds["start"], end=bounds["end"])
    started = live_sessions.c.started_at
    live = await conn.fetch_one(
        select(
            func.count().label("total"),
            func.count().filter(started >= bounds["start"], started < bounds["end"]).label("in_range"),
        ).where(started.is_not(None))
    )
    assert live is not None
    return {
        **window.describe(),
        "users_by_role": roles,
        "total_users": sum(roles.values()),
        "new_users_per_day": [{"date": d["date"], "count": int(d["value"])} for d in new_users],
        "enrollments_by_status": by_status,
        "total_enrollments": sum(by_status.values()),
        "enrollments_per_day": [{"date": d["date"], "count": int(d["value"])} for d in new_enrollments],
        "revenue_by_currency": [figures(r) for r in revenue],
        "active_users": {
            "last_7_days": await active_users(conn, now - timedelta(days=7)),
            "last_30_days": await active_users(conn, now - timedelta(days=30)),
        },
        "live_sessions_run": {"total": int(live["total"]), "in_range": int(live["in_range"])},
    }


_NEW_USERS = per_day_statement(select().select_from(users), users.c.created_at, func.count())
_NEW_ENROLLMENTS = per_day_statement(select().select_from(enrollments), enrollments.c.enrolled_at, func.count())


async def active_users(conn: Connection, since: datetime) -> int:
    """Users who signed in, or recorded progress (an enrollment's last access), at or after ``since``."""
    signed_in = select(users.c.id).where(users.c.last_login_at >= since)
    studied = select(enrollments.c.student_id).where(enrollments.c.last_accessed_at >= since)
    either = union(signed_in, studied).subquery()
    return int(await conn.fetch_val(select(func.count()).select_from(either)))
