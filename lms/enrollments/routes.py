"""Enrollment and progress routes (``/api/v1/enrollments/...``).

Each route's contract is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page, page_json
from lms.api.problems import Conflict
from lms.appkeys import DB
from lms.auth.guards import authenticated, current_user, require
from lms.auth.permissions import Permission
from lms.courses.access import load_course
from lms.db import Row
from lms.effects import EFFECTS
from lms.enrollments import queries, service
from lms.enrollments.access import load_enrollment
from lms.enrollments.schemas import (
    CourseEnrollmentOut,
    EnrollIn,
    EnrollmentDetail,
    EnrollmentListQuery,
    EnrollmentOut,
    EnrollmentStats,
    MyEnrollmentOut,
    ProgressIn,
    ProgressOut,
    ReviewIn,
    ReviewOut,
)

routes = web.RouteTableDef()
TAGS = ["enrollments"]


@routes.post("/api/v1/enrollments")
@endpoint(
    summary="Enroll in a published course",
    description=(
        "A free course: 201 and an active enrollment. A paid course: 402 with a problem document whose "
        "`checkout` member says where to pay. Already enrolled: 409."
    ),
    body=EnrollIn,
    response=EnrollmentOut,
    status=201,
    errors=[402, 404, 409],
    guards=[require(Permission.ENROLL)],
    tags=TAGS,
)
async def enroll(request: web.Request, body: EnrollIn) -> Row:
    return await service.enroll(request.app[DB], request.app[EFFECTS], current_user(request), body.course_id)


@routes.get("/api/v1/enrollments/my-courses")
@endpoint(
    summary="My enrollments, newest first, with their courses",
    query=EnrollmentListQuery,
    response=Page[MyEnrollmentOut],
    guards=[authenticated],
    tags=TAGS,
)
async def my_courses(request: web.Request, query: EnrollmentListQuery) -> web.Response:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_student_enrollments(
            conn, student_id=current_user(request).id, status=query.status, limit=query.limit, offset=query.offset
        )
    return web.json_response(body=page_json(rows, total, query, MyEnrollmentOut))


@routes.get("/api/v1/enrollments/{id}")
@endpoint(
    summary="An enrollment with its lesson progress",
    description="For the student, the course's instructor and admins; 404 for anyone else.",
    response=EnrollmentDetail,
    errors=[404],
    guards=[authenticated],
    tags=TAGS,
)
async def get_enrollment(request: web.Request) -> Row:
    async with request.app[DB].connection() as conn:
        enrollment = await load_enrollment(conn, current_user(request), path_uuid(request))
        return enrollment | {"lessons": await queries.lesson_progress_of(conn, enrollment["id"])}


@routes.delete("/api/v1/enrollments/{id}")
@endpoint(
    summary="Drop a course",
    description="The student's enrollment becomes `dropped` (progress is kept). A completed enrollment stays: 409.",
    status=204,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def drop(request: web.Request) -> None:
    async with request.app[DB].transaction() as conn:
        enrollment = await load_enrollment(conn, current_user(request), path_uuid(request), as_student=True)
        if await queries.drop(conn, enrollment["id"]) is None:
            raise Conflict(f"This enrollment is {enrollment['status']} and cannot be dropped.")


@routes.get("/api/v1/courses/{id}/enrollments")
@endpoint(
    summary="A course's students",
    description="For the course's instructor and admins.",
    query=EnrollmentListQuery,
    response=Page[CourseEnrollmentOut],
    errors=[403, 404],
    guards=[authenticated],
    tags=TAGS,
)
async def course_enrollments(request: web.Request, query: EnrollmentListQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        course = await load_course(conn, current_user(request), course_id=path_uuid(request), manage=True)
        rows, total = await queries.list_course_enrollments(
            conn, course_id=course["id"], status=query.status, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)


@routes.get("/api/v1/courses/{id}/enrollments/stats")
@endpoint(
    summary="A course's enrollment figures",
    description="Counts by status, completion rate, average progress and study time, rating.",
    response=EnrollmentStats,
    errors=[403, 404],
    guards=[authenticated],
    tags=TAGS,
)
async def course_enrollment_stats(request: web.Request) -> Row:
    async with request.app[DB].connection() as conn:
        course = await load_course(conn, current_user(request), course_id=path_uuid(request), manage=True)
        stats = await queries.course_stats(conn, course["id"])
    return stats | {"rating_average": course["rating_average"], "rating_count": course["rating_count"]}


@routes.put("/api/v1/enrollments/{id}/lessons/{lesson_id}/progress")
@endpoint(
    summary="Report progress on a lesson",
    description=(
        "`time_spent_seconds` is the study time since the last report (0 to 4 hours); it adds up. "
        "`completion_percentage` never goes down; 100 completes the lesson. Safe from several devices at once."
    ),
    body=ProgressIn,
    response=ProgressOut,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def report_progress(request: web.Request, body: ProgressIn) -> dict[str, Row]:
    return await service.record_progress(
        request.app[DB], request.app[EFFECTS], current_user(request),
        path_uuid(request), path_uuid(request, "lesson_id"),
        seconds=body.time_spent_seconds, position=body.last_position_seconds, percentage=body.completion_percentage,
    )  # fmt: skip


@routes.post("/api/v1/enrollments/{id}/lessons/{lesson_id}/complete")
@endpoint(
    summary="Mark a lesson complete",
    description="Re-computes the enrollment's progress; the last lesson completes the course and queues a certificate.",
    response=ProgressOut,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def complete_lesson(request: web.Request) -> dict[str, Row]:
    return await service.record_progress(
        request.app[DB], request.app[EFFECTS], current_user(request),
        path_uuid(request), path_uuid(request, "lesson_id"),
        percentage=100,
    )  # fmt: skip


@routes.post("/api/v1/enrollments/{id}/review")
@endpoint(
    summary="Rate and review the course",
    description="One review per enrollment: sending another replaces it. The course's average follows.",
    body=ReviewIn,
    response=ReviewOut,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def review(request: web.Request, body: ReviewIn) -> Row:
    return await service.review(
        request.app[DB], current_user(request), path_uuid(request), rating=body.rating, text=body.review
    )
