"""Course and lesson routes (``/api/v1/courses/...``, ``/api/v1/lessons/...``).

Each route's contract is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, PageQuery
from lms.api.problems import Conflict, Forbidden, ValidationFailed
from lms.appkeys import DB
from lms.auth.guards import Principal, current_user, optional_user, require
from lms.auth.permissions import Permission
from lms.courses import queries
from lms.courses.access import load_course, load_lesson, manages, parse_course_ref
from lms.courses.schemas import (
    CourseDeleteQuery,
    CourseIn,
    CourseListQuery,
    CourseOut,
    CourseUpdate,
    LessonIn,
    LessonOrder,
    LessonOut,
    LessonUpdate,
    course_page_json,
    price_columns,
)
from lms.db import Connection, Row
from lms.effects import EFFECTS
from lms.files.access import check_lesson_file

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
COURSES = ["courses"]
LESSONS = ["lessons"]
create_courses = require(Permission.CREATE_COURSE)
update_courses = require(Permission.UPDATE_COURSE)
delete_courses = require(Permission.DELETE_COURSE)


async def lessons_changed(request: web.Request, course_id: uuid.UUID) -> None:
    """Enrollment percentages depend on the published lessons: recompute them (after the commit)."""
    await request.app[EFFECTS].enqueue("recalculate_course_progress", course_id=str(course_id))


async def managed_course(request: web.Request, conn: Connection) -> Row:
    """The course named by the path, which the caller must own (or be an admin); locked until commit."""
    return await load_course(conn, current_user(request), course_id=path_uuid(request), manage=True, lock="update")


# --- courses -----------------------------------------------------------------


@routes.get("/api/v1/courses")
@endpoint(
    summary="Published courses",
    description="Filters combine; `q` is a full-text search over title and description (PostgreSQL).",
    query=CourseListQuery,
    response=Page[CourseOut],
    tags=COURSES,
)
async def list_courses(request: web.Request, query: CourseListQuery) -> web.Response:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_courses(
            conn,
            limit=query.limit,
            offset=query.offset,
            instructor_id=query.instructor_id,
            category=query.category,
            difficulty_level=query.difficulty_level,
            q=query.q,
        )
    return web.json_response(body=course_page_json(rows, total, query))


@routes.get("/api/v1/courses/mine")
@endpoint(
    summary="My courses as an instructor, drafts included",
    query=PageQuery,
    response=Page[CourseOut],
    guards=[create_courses],
    tags=COURSES,
)
async def my_courses(request: web.Request, query: PageQuery) -> web.Response:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_courses(
            conn, limit=query.limit, offset=query.offset, published_only=False, instructor_id=current_user(request).id
        )
    return web.json_response(body=course_page_json(rows, total, query))


@routes.post("/api/v1/courses")
@endpoint(
    summary="Create a course (a draft)",
    description="The slug comes from the title, made unique (`python`, `python-2` ...), and never changes after.",
    body=CourseIn,
    response=CourseOut,
    status=201,
    guards=[create_courses],
    tags=COURSES,
)
async def create_course(request: web.Request, body: CourseIn) -> Row:
    values = body.model_dump(exclude={"price"}) | price_columns(body.price)
    async with request.app[DB].transaction() as conn:
        return await queries.create_course(conn, instructor_id=current_user(request).id, **values)


@routes.get("/api/v1/courses/{id}")
@endpoint(
    summary="A course, by id or slug",
    description="Published courses for anyone; drafts for their instructor and admins (404 for others).",
    response=CourseOut,
    errors=[404],
    tags=COURSES,
)
async def get_course(request: web.Request) -> Row:
    principal = await optional_user(request)
    course_id, slug = parse_course_ref(request.match_info["id"])
    async with request.app[DB].connection() as conn:
        return await load_course(conn, principal, course_id=course_id, slug=slug)


@routes.patch("/api/v1/courses/{id}")
@endpoint(
    summary="Change a course",
    description="Only the fields sent change; `null` clears an optional one. The slug stays.",
    body=CourseUpdate,
    response=CourseOut,
    errors=[404],
    guards=[update_courses],
    tags=COURSES,
)
async def update_course(request: web.Request, body: CourseUpdate) -> Row | None:
    values = body.model_dump(exclude_unset=True, exclude={"price"})
    if "price" in body.model_fields_set:
        values |= price_columns(body.price)
    async with request.app[DB].transaction() as conn:
        course = await managed_course(request, conn)
        return await queries.update_course(conn, course["id"], values)


@routes.delete("/api/v1/courses/{id}")
@endpoint(
    summary="Delete a course",
    description="Refused (409) while students are enrolled, unless an admin sends `force=true`.",
    query=CourseDeleteQuery,
    status=204,
    errors=[404, 409],
    guards=[delete_courses],
    tags=COURSES,
)
async def delete_course(request: web.Request, query: CourseDeleteQuery) -> None:
    me = current_user(request)
    async with request.app[DB].transaction() as conn:
        # An exclusive lock keeps new enrollments out (their foreign-key check
        # waits for it) between the count and the delete.
        course = await load_course(conn, me, course_id=path_uuid(request), manage=True, lock="exclusive")
        if query.force and not me.is_admin:
            raise Forbidden("Only an admin may force the deletion of a course with students.")
        enrolled = await queries.count_holding_enrollments(conn, course["id"])
        if enrolled and not query.force:
            raise Conflict(
                f"{enrolled} student(s) are enrolled in this course; an admin may force the deletion.",
                enrolled=enrolled,
            )
        await queries.delete_course(conn, course["id"])
    log.info("course %s deleted by %s (%d enrollments)", course["id"], me.id, enrolled)


@routes.post("/api/v1/courses/{id}/publish")
@endpoint(
    summary="Publish a course",
    description="Needs at least one published lesson (409 otherwise).",
    response=CourseOut,
    errors=[404, 409],
    guards=[update_courses],
    tags=COURSES,
)
async def publish_course(request: web.Request) -> Row:
    async with request.app[DB].transaction() as conn:
        course = await managed_course(request, conn)
        published = await queries.publish_course(conn, course["id"])
    if published is None:
        raise Conflict("A course needs at least one published lesson before it is published.")
    return published


@routes.post("/api/v1/courses/{id}/unpublish")
@endpoint(
    summary="Take a course back to draft",
    description="The course leaves the catalogue; enrollments and progress are kept for when it is published again.",
    response=CourseOut,
    errors=[404],
    guards=[update_courses],
    tags=COURSES,
)
async def unpublish_course(request: web.Request) -> Row | None:
    async with request.app[DB].transaction() as conn:
        course = await managed_course(request, conn)
        return await queries.unpublish_course(conn, course["id"])


# --- lessons -----------------------------------------------------------------


async def full_access(conn: Connection, principal: Principal | None, course: Row) -> bool:
    """Owners, admins and enrolled students see every lesson's content."""
    if principal is None:
        return False
    if manages(principal, course):
        return True
    return await queries.has_lesson_access(conn, course_id=course["id"], student_id=principal.id)


def present(lesson: Row, access: bool) -> Row:
    if access or lesson["is_free"]:
        return lesson
    return {**lesson, "content": None, "video_url": None, "file_id": None, "locked": True}


@routes.get("/api/v1/courses/{id}/lessons")
@endpoint(
    summary="A course's lessons, in order",
    description=(
        "Published lessons for anyone who may see the course; drafts too for the owner and admins. "
        "Content and video only for enrolled students, the owner, admins, or `is_free` lessons; "
        "other lessons come with `locked: true`."
    ),
    response=list[LessonOut],
    errors=[404],
    tags=LESSONS,
)
async def list_lessons(request: web.Request) -> list[Row]:
    principal = await optional_user(request)
    async with request.app[DB].connection() as conn:
        course = await load_course(conn, principal, course_id=path_uuid(request))
        rows = await queries.list_lessons(conn, course["id"], published_only=not manages(principal, course))
        access = await full_access(conn, principal, course)
    return [present(row, access) for row in rows]


@routes.post("/api/v1/courses/{id}/lessons")
@endpoint(
    summary="Add a lesson",
    description="Appended, or inserted at `order` (1-based) with the later lessons moved down.",
    body=LessonIn,
    response=LessonOut,
    status=201,
    errors=[404],
    guards=[update_courses],
    tags=LESSONS,
)
async def create_lesson(request: web.Request, body: LessonIn) -> Row:
    async with request.app[DB].transaction() as conn:
        course = await managed_course(request, conn)
        if body.file_id is not None:
            await check_lesson_file(conn, current_user(request), body.file_id)
        lesson = await queries.create_lesson(conn, course["id"], body.order, **body.model_dump(exclude={"order"}))
    if lesson["is_published"]:
        await lessons_changed(request, course["id"])
    return lesson


@routes.put("/api/v1/courses/{id}/lessons/order")
@endpoint(
    summary="Reorder a course's lessons",
    description="`lesson_ids` lists every lesson of the course once, in the new order; applied in one transaction.",
    body=LessonOrder,
    response=list[LessonOut],
    errors=[404],
    guards=[update_courses],
    tags=LESSONS,
)
async def reorder_lessons(request: web.Request, body: LessonOrder) -> list[Row]:
    async with request.app[DB].transaction() as conn:
        course = await managed_course(request, conn)
        existing = await queries.lesson_ids(conn, course["id"])
        wanted = body.lesson_ids
        if len(set(wanted)) != len(wanted) or set(wanted) != existing:
            unknown = sorted(str(i) for i in set(wanted) - existing)
            missing = sorted(str(i) for i in existing - set(wanted))
            raise ValidationFailed(
                "lesson_ids must list every lesson of this course exactly once.",
                errors=[{"field": "lesson_ids", "message": f"duplicates: {len(wanted) - len(set(wanted))}, "
                         f"unknown: {unknown}, missing: {missing}"}],
            )  # fmt: skip
        return await queries.reorder_lessons(conn, course["id"], wanted)


@routes.get("/api/v1/lessons/{id}")
@endpoint(
    summary="A lesson",
    description="Same rules as the course's lesson list.",
    response=LessonOut,
    errors=[404],
    tags=LESSONS,
)
async def get_lesson(request: web.Request) -> Row:
    principal = await optional_user(request)
    async with request.app[DB].connection() as conn:
        course, lesson = await load_lesson(conn, principal, path_uuid(request))
        access = await full_access(conn, principal, course)
    return present(lesson, access)


@routes.patch("/api/v1/lessons/{id}")
@endpoint(
    summary="Change a lesson",
    description="`order` moves it; publishing or unpublishing it re-computes the students' progress.",
    body=LessonUpdate,
    response=LessonOut,
    errors=[404],
    guards=[update_courses],
    tags=LESSONS,
)
async def update_lesson(request: web.Request, body: LessonUpdate) -> Row:
    async with request.app[DB].transaction() as conn:
        _, lesson = await load_lesson(conn, current_user(request), path_uuid(request), manage=True, lock="update")
        if body.file_id is not None:
            await check_lesson_file(conn, current_user(request), body.file_id)
        updated = await queries.update_lesson(conn, lesson, body.model_dump(exclude_unset=True))
    if updated["is_published"] != lesson["is_published"]:
        await lessons_changed(request, lesson["course_id"])
    return updated


@routes.delete("/api/v1/lessons/{id}")
@endpoint(
    summary="Delete a lesson",
    description="The later lessons move up; the students' progress is re-computed.",
    status=204,
    errors=[404],
    guards=[update_courses],
    tags=LESSONS,
)
async def delete_lesson(request: web.Request) -> None:
    async with request.app[DB].transaction() as conn:
        _, lesson = await load_lesson(conn, current_user(request), path_uuid(request), manage=True, lock="update")
        await queries.delete_lesson(conn, lesson)
    if lesson["is_published"]:
        await lessons_changed(request, lesson["course_id"])
