"""Analytics routes: a course, a student, an instructor, the platform (``/api/v1/analytics/...``)."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from lms.analytics import exports, platform, queries, students
from lms.analytics.overview import system_overview
from lms.analytics.schemas import (
    CourseAnalytics,
    CourseAnalyticsQuery,
    EnrollmentProgress,
    InstructorOverview,
    MyDashboard,
    MyProgressQuery,
    SystemOverview,
)
from lms.analytics.window import Window, WindowQuery, zone_known_to_the_database
from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page
from lms.api.problems import Forbidden, NotFound
from lms.api.spreadsheets import csv_text
from lms.appkeys import CONFIG, DB, REDIS
from lms.auth.guards import authenticated, current_user, require
from lms.auth.permissions import Permission, Role, owner_or_admin
from lms.courses.access import load_course
from lms.db import Database
from lms.enrollments.queries import course_stats
from lms.enrollments.studying import studying_count
from lms.payments import queries as payments
from lms.payments.schemas import figures
from lms.users.queries import get_user

routes = web.RouteTableDef()
TAGS = ["analytics"]
WINDOW_DOC = (
    "Series are per local day of `tz` (an IANA zone, default UTC) from `from` to `to` (both included; default "
    "the last 30 days). An unknown zone, `from` after `to` or more than 366 days: 422."
)


@routes.get("/api/v1/analytics/courses/{id}")
@endpoint(
    summary="A course's figures: enrollments, lessons funnel, quiz scores, rating, revenue",
    description=(
        "For the course's instructor and admins. The enrollment figures are those of "
        "`/courses/{id}/enrollments/stats` (same query). Every figure is exact and current: the stats rows it "
        "reads are updated in the transaction of each change. `format=csv` answers one table instead "
        "(`table=lessons`: one row per lesson; `table=students`: one row per enrollment). " + WINDOW_DOC
    ),
    query=CourseAnalyticsQuery,
    response=CourseAnalytics,
    errors=[403, 404, 422],
    guards=[authenticated],
    tags=TAGS,
)
async def course_analytics(request: web.Request, query: CourseAnalyticsQuery) -> Any:
    window = query.window()
    db = request.app[DB]
    with zone_known_to_the_database(window.tz):
        return await _course_analytics(request, db, query, window)


async def _course_analytics(request: web.Request, db: Database, query: CourseAnalyticsQuery, window: Window) -> Any:
    async with db.connection() as conn:
        course = await load_course(conn, current_user(request), course_id=path_uuid(request), manage=True)
        if query.format == "csv" and query.table == "students":
            filename = f"course-{course['slug']}-students.csv"
        else:
            as_of = datetime.now(UTC)
            stats = await course_stats(conn, course["id"])
            studying = studying_count(stats["by_status"])
            lessons = await queries.lesson_figures(conn, course["id"], studying)
            if query.format == "csv":
                text = csv_text(exports.lesson_rows(lessons))
                return exports.csv_response(f"course-{course['slug']}-lessons.csv", text)
            return {
                **stats,
                **window.describe(),
                "title": course["title"],
                "rating_average": course["rating_average"],
                "rating_count": course["rating_count"],
                "progress_distribution": await queries.progress_distribution(conn, course["id"]),
                "lessons": lessons,
                "quiz_scores": await queries.quiz_figures(conn, course["id"]),
                "enrollments_per_day": await queries.course_enrollments_per_day(conn, course["id"], window),
                "revenue": [figures(r) for r in await payments.course_revenue(conn, course["id"])],
                "as_of": as_of,
            }
    return await exports.stream_students(request, db, course["id"], window.tz, filename)


@routes.get("/api/v1/analytics/my-progress")
@endpoint(
    summary="My enrollments with their progress",
    description="Progress, lessons done and total, study time, last activity and quiz average per enrollment; "
    "newest enrollment first.",
    query=MyProgressQuery,
    response=Page[EnrollmentProgress],
    guards=[authenticated],
    tags=TAGS,
)
async def my_progress(request: web.Request, query: MyProgressQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await students.enrollment_progress(
            conn, student_id=current_user(request).id, status=query.status, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)


@routes.get("/api/v1/analytics/my-dashboard")
@endpoint(
    summary="My learning at a glance: totals, quizzes, certificates, streak, time per day",
    description="The streak counts local days (in `tz`) with at least one progress report. " + WINDOW_DOC,
    query=WindowQuery,
    response=MyDashboard,
    errors=[422],
    guards=[authenticated],
    tags=TAGS,
)
async def my_dashboard(request: web.Request, query: WindowQuery) -> dict[str, Any]:
    window = query.window()
    student_id = current_user(request).id
    today = datetime.now(UTC).astimezone(zoneinfo.ZoneInfo(window.tz)).date()
    with zone_known_to_the_database(window.tz):
        return await _my_dashboard(request, student_id, window, today)


async def _my_dashboard(request: web.Request, student_id: uuid.UUID, window: Window, today: date) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        recent, _ = await students.enrollment_progress(
            conn, student_id=student_id, status="active", limit=students.CONTINUE_LEARNING, offset=0, order="activity"
        )
        return {
            **window.describe(),
            "totals": await students.totals(conn, student_id),
            "continue_learning": recent,
            "quizzes": await students.quiz_history(conn, student_id),
            "certificates": await students.my_certificates(conn, student_id),
            "streak": students.streak(await students.active_days(conn, student_id, window.tz), today),
            "time_spent_per_day": await students.time_per_day(conn, student_id, window),
        }


@routes.get("/api/v1/analytics/instructors/{id}/overview")
@endpoint(
    summary="An instructor's courses side by side, distinct students and totals",
    description="For that instructor and admins. Revenue is all time, per currency.",
    response=InstructorOverview,
    errors=[403, 404],
    guards=[require(Permission.VIEW_ANALYTICS)],
    tags=TAGS,
)
async def instructor_overview(request: web.Request) -> dict[str, Any]:
    principal = current_user(request)
    instructor_id = path_uuid(request)
    if not owner_or_admin(principal, instructor_id):
        raise Forbidden("Only that instructor or an admin may see these figures.")
    async with request.app[DB].connection() as conn:
        instructor = await get_user(conn, instructor_id)
        if instructor is None or instructor["role"] not in (Role.INSTRUCTOR, Role.ADMIN):
            raise NotFound("No such instructor.")
        return await platform.instructor_overview(conn, instructor)


@routes.get("/api/v1/analytics/system/overview")
@endpoint(
    summary="The platform: users by role, enrollments, revenue, active users, live sessions",
    description=(
        "For admins. A snapshot shared by every instance, recomputed when older than "
        "`analytics.overview_max_age_seconds` (`as_of` says when it was taken; every figure is exact as of then). "
        + WINDOW_DOC
    ),
    query=WindowQuery,
    response=SystemOverview,
    errors=[403, 422],
    guards=[require(Permission.VIEW_PLATFORM_ANALYTICS)],
    tags=TAGS,
)
async def system(request: web.Request, query: WindowQuery) -> web.Response:
    window = query.window()
    max_age = request.app[CONFIG].analytics.overview_max_age_seconds
    with zone_known_to_the_database(window.tz):
        body = await system_overview(request.app[DB], request.app[REDIS], window, max_age)
    return web.Response(body=body, content_type="application/json")
