"""One rule per concept, whoever asks: REST routes, Socket.IO namespaces and jobs.

Ownership (:func:`lms.auth.permissions.owner_or_admin`), what counts as
enrolled (:mod:`lms.enrollments.studying`) and who sees a course
(:mod:`lms.courses.access`) are each decided in one place; these tests ask
every surface the same question and expect the same answer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from lms.auth.guards import Principal
from lms.auth.permissions import owner_or_admin
from lms.db import Database
from lms.enrollments.studying import STUDYING
from lms.tables import ENROLLMENT_STATUSES
from tests.builders import bearer, login, make_course, make_enrollment, make_lesson, make_question, make_quiz, make_user
from tests.conftest import Instance

DASH = "/dashboard"


@dataclass(frozen=True)
class Someone:
    id: uuid.UUID
    role: str


@pytest.mark.no_services
def test_the_owner_and_admins_and_nobody_else() -> None:
    owner = uuid.uuid4()
    assert owner_or_admin(Someone(owner, "instructor"), owner)
    assert owner_or_admin(Someone(owner, "student"), owner)
    assert owner_or_admin(Someone(uuid.uuid4(), "admin"), owner)
    assert not owner_or_admin(Someone(uuid.uuid4(), "instructor"), owner)
    assert not owner_or_admin(None, owner)
    # A request's principal and a socket's are the same kind of actor.
    principal = Principal(id=owner, role="instructor", email="a@b.c", full_name="A", jti="j", expires_at=0)
    assert owner_or_admin(principal, owner)


async def token(instance: Instance, user: dict[str, Any]) -> str:
    return str((await login(instance.http, user["email"]))["access_token"])


@pytest.mark.parametrize("status", ENROLLMENT_STATUSES)
async def test_every_surface_agrees_on_who_studies_a_course(
    status: str, instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    instructor = await make_user(db, role="instructor")
    student = await make_user(db, role="student")
    course = await make_course(db, instructor, is_published=True)
    await make_lesson(db, course, title="Paid", content="secret text")
    quiz = await make_quiz(db, course_id=course["id"])
    await make_question(db, quiz_id=quiz["id"])
    await make_enrollment(db, student, course, status=status)
    studying = status in STUDYING
    headers = bearer(await token(a, student))

    # REST: the lessons' content, the course's quizzes, taking one.
    lessons = await (await a.http.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)).json()
    assert (lessons[0]["content"] == "secret text") is studying
    listed = await a.http.get(f"/api/v1/courses/{course['id']}/quizzes", headers=headers)
    assert listed.status == (200 if studying else 403)
    started = await a.http.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=headers)
    assert started.status == (201 if studying else 404)

    # Socket.IO: a connected student counts as online on the course's dashboard only while studying.
    await live().connect(b.url, await token(b, student))  # returns once the connection is set up
    watcher = await live().connect(a.url, await token(a, instructor), DASH)
    ack = await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
    assert ack["online_students"] == (1 if studying else 0)


async def test_a_draft_course_is_its_owners_on_every_surface(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a = instances[0]
    owner = await make_user(db, role="instructor")
    rival = await make_user(db, role="instructor")
    student = await make_user(db, role="student")
    course = await make_course(db, owner, is_published=False)  # unpublished after the student enrolled
    quiz = await make_quiz(db, course_id=course["id"])
    await make_question(db, quiz_id=quiz["id"])
    await make_enrollment(db, student, course)

    async def rest(user: dict[str, Any]) -> list[int]:
        headers = bearer(await token(a, user))
        paths = [f"/api/v1/courses/{course['id']}", f"/api/v1/courses/{course['id']}/quizzes",
                 f"/api/v1/quizzes/{quiz['id']}"]  # fmt: skip
        return [(await a.http.get(path, headers=headers)).status for path in paths]

    async def watch(user: dict[str, Any]) -> Any:
        client = await live().connect(a.url, await token(a, user), DASH)
        ack = await client.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
        return True if ack["ok"] else ack["error"]["code"]

    assert await rest(owner) == [200, 200, 200]
    assert await watch(owner) is True
    for outsider in (student, rival):
        assert await rest(outsider) == [404, 404, 404]
        assert await watch(outsider) == "not_found"


async def test_the_database_triggers_count_the_same_students(db: Database) -> None:
    """The analytics triggers (migration 0007) cannot import Python: their copy of the rule must agree."""
    async with db.connection() as conn:
        for status in ENROLLMENT_STATUSES:
            assert await conn.fetch_val(f"SELECT analytics_studying('{status}')") is (status in STUDYING), status
