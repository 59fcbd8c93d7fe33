"""Who may see and change a course or a lesson: the one "load it or 404, then check" helper.

Drafts are invisible (404) to everyone but the owner and admins; a visible
course that the caller may not change answers 403. Everything that belongs
to a course (its quizzes, live sessions, dashboard) is managed by whoever
:func:`manages` the course, on REST and Socket.IO alike.
"""

from __future__ import annotations

import uuid

from lms.api.problems import Forbidden, NotFound
from lms.auth.guards import Principal
from lms.auth.permissions import Actor, owner_or_admin
from lms.courses import queries
from lms.courses.queries import Lock
from lms.db import Connection, Row


def manages(actor: Actor | None, course: Row) -> bool:
    """The course's instructor or an admin; ``course`` is any row with the course's ``instructor_id``."""
    return owner_or_admin(actor, course["instructor_id"])


def parse_course_ref(value: str) -> tuple[uuid.UUID | None, str | None]:
    """A course is named by its id or its slug."""
    try:
        return uuid.UUID(value), None
    except ValueError:
        return None, value


async def load_course(
    conn: Connection,
    principal: Principal | None,
    *,
    course_id: uuid.UUID | None = None,
    slug: str | None = None,
    manage: bool = False,
    lock: Lock = None,
) -> Row:
    """The course if the caller may see it (and change it, with ``manage``); else 404/403.

    ``lock`` holds the course row until the transaction ends: lesson
    structure changes and rating updates of one course are serialized by it.
    """
    course = await queries.get_course(conn, course_id=course_id, slug=slug, lock=lock)
    if course is None:
        raise NotFound("No such course.")
    owner = manages(principal, course)
    if not course["is_published"] and not owner:
        raise NotFound("No such course.")
    if manage and not owner:
        raise Forbidden("Only the course's instructor or an admin may change it.")
    return course


async def load_lesson(
    conn: Connection, principal: Principal | None, lesson_id: uuid.UUID, *, manage: bool = False, lock: Lock = None
) -> tuple[Row, Row]:
    """The lesson and its course, under the course's rules; draft lessons are the owner's only."""
    lesson = await queries.get_lesson(conn, lesson_id)
    if lesson is None:
        raise NotFound("No such lesson.")
    course = await load_course(conn, principal, course_id=lesson["course_id"], manage=manage, lock=lock)
    if lock:
        # Re-read under the course lock: its position may have moved meanwhile.
        lesson = await queries.get_lesson(conn, lesson_id)
        if lesson is None:
            raise NotFound("No such lesson.")
    if not lesson["is_published"] and not manages(principal, course):
        raise NotFound("No such lesson.")
    return course, lesson
