"""Small builders for test data, straight into PostgreSQL (no API round trips)."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
from sqlalchemy import func, insert, select

from lms.db import Database, Row
from lms.tables import courses, enrollments, lessons, quiz_questions, quizzes, users

PASSWORD = "correct horse battery staple"

# The smallest environment production accepts (every required secret set, strong enough).
PRODUCTION_ENV = {
    "LMS_AUTH_SECRET_KEY": "p" * 40,
    "LMS_HTTP_TRUSTED_HOSTS": "127.0.0.1,lms.example",
    "LMS_CERTIFICATES_SIGNING_KEY": "A" * 43,  # a 32-byte Ed25519 seed, base64url
}


@functools.cache
def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


async def make_user(db: Database, *, password: str = PASSWORD, **overrides: Any) -> Row:
    values: dict[str, Any] = {
        "email": f"user-{uuid.uuid4().hex[:10]}@example.com",
        "full_name": "Test Person",
        "role": "student",
        "password_hash": _hash(password),
    } | overrides
    async with db.transaction() as conn:
        row = await conn.fetch_one(insert(users).values(**values).returning(users))
    assert row is not None
    return row


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signed_in(client: Any, db: Database, **overrides: Any) -> tuple[Row, dict[str, str]]:
    """A user and the Authorization header of a fresh session."""
    user = await make_user(db, **overrides)
    tokens = await login(client, user["email"])
    return user, bearer(tokens["access_token"])


# -- quizzes (courses and enrollments inserted directly) ----------------------


class FakeClock:
    """A clock a test moves by hand; store it under ``lms.quizzes.clock.CLOCK``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


async def make_quiz_course(db: Database, *, instructor_id: uuid.UUID, **overrides: Any) -> Row:
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "title": f"Course {suffix}",
        "slug": f"course-{suffix}",
        "instructor_id": instructor_id,
        "is_published": True,
    } | overrides
    async with db.transaction() as conn:
        row = await conn.fetch_one(insert(courses).values(**values).returning(courses))
    assert row is not None
    return row


async def make_quiz_enrollment(
    db: Database, *, student_id: uuid.UUID, course_id: uuid.UUID, status: str = "active"
) -> Row:
    async with db.transaction() as conn:
        row = await conn.fetch_one(
            insert(enrollments).values(student_id=student_id, course_id=course_id, status=status).returning(enrollments)
        )
    assert row is not None
    return row


async def make_quiz(db: Database, *, course_id: uuid.UUID, **overrides: Any) -> Row:
    values: dict[str, Any] = {"course_id": course_id, "title": "A quiz", "is_published": True} | overrides
    async with db.transaction() as conn:
        row = await conn.fetch_one(insert(quizzes).values(**values).returning(quizzes))
    assert row is not None
    return row


QUESTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "single_choice": {
        "options": [{"id": "a", "text": "Lyon"}, {"id": "b", "text": "Paris"}, {"id": "c", "text": "Nice"}],
        "correct_answer": "b",
    },
    "multiple_choice": {
        "options": [
            {"id": "a", "text": "2"},
            {"id": "b", "text": "3"},
            {"id": "c", "text": "4"},
            {"id": "d", "text": "5"},
        ],
        "correct_answer": ["a", "b", "d"],
    },
    "true_false": {
        "options": [{"id": "true", "text": "True"}, {"id": "false", "text": "False"}],
        "correct_answer": True,
    },
    "short_answer": {"options": [], "correct_answer": ["Ulan Bator", "Ulaanbaatar"]},
}


async def make_question(
    db: Database, *, quiz_id: uuid.UUID, question_type: str = "single_choice", **overrides: Any
) -> Row:
    async with db.transaction() as conn:
        position = await conn.fetch_val(
            select(func.coalesce(func.max(quiz_questions.c.position) + 1, 0)).where(quiz_questions.c.quiz_id == quiz_id)
        )
        values: dict[str, Any] = {
            "quiz_id": quiz_id,
            "question_text": f"Question {position}",
            "question_type": question_type,
            "position": position,
            "points": 1,
            **QUESTION_DEFAULTS.get(question_type, {}),
        } | overrides
        row = await conn.fetch_one(insert(quiz_questions).values(**values).returning(quiz_questions))
    assert row is not None
    return row


# --- courses, lessons, enrollments --------------------------------------------


async def make_course(db: Database, instructor: Row, **overrides: Any) -> Row:
    """A course of ``instructor``; ``lessons=N`` adds N published text lessons."""
    lesson_count = overrides.pop("lessons", 0)
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "title": f"Course {suffix}",
        "slug": f"course-{suffix}",
        "description": "A course built by a test.",
        "instructor_id": instructor["id"],
    } | overrides
    if values.get("is_published") and "published_at" not in values:
        values["published_at"] = datetime.now(UTC)
    async with db.transaction() as conn:
        row = await conn.fetch_one(insert(courses).values(**values).returning(courses))
        assert row is not None
        for position in range(1, lesson_count + 1):
            await conn.execute(
                insert(lessons).values(
                    course_id=row["id"], title=f"Lesson {position}", slug=f"lesson-{position}", content_type="text",
                    content=f"Text of lesson {position}", position=position, is_published=True,
                )
            )  # fmt: skip
    return row


async def make_lesson(db: Database, course: Row, **overrides: Any) -> Row:
    async with db.transaction() as conn:
        position = overrides.pop("position", None)
        if position is None:
            count = await conn.fetch_val(
                select(func.count()).select_from(lessons).where(lessons.c.course_id == course["id"])
            )
            position = int(count) + 1
        suffix = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "course_id": course["id"],
            "title": f"Lesson {suffix}",
            "slug": f"lesson-{suffix}",
            "content_type": "text",
            "content": "Lesson text",
            "position": position,
            "is_published": True,
        } | overrides
        row = await conn.fetch_one(insert(lessons).values(**values).returning(lessons))
    assert row is not None
    return row


async def make_enrollment(db: Database, student: Row, course: Row, **overrides: Any) -> Row:
    """An enrollment straight into the table (no email, no event); counters as given."""
    async with db.transaction() as conn:
        total = await conn.fetch_val(
            select(func.count()).select_from(lessons).where(lessons.c.course_id == course["id"], lessons.c.is_published)
        )
        values: dict[str, Any] = {
            "student_id": student["id"],
            "course_id": course["id"],
            "status": "active",
            "total_lessons_count": int(total),
        } | overrides
        row = await conn.fetch_one(insert(enrollments).values(**values).returning(enrollments))
    assert row is not None
    return row


def collect_events(app: Any) -> list[Any]:
    """Every domain event the app publishes from now on, in order (a real subscriber on the bus)."""
    from lms.events import EVENTS

    seen: list[Any] = []

    async def keep(event: Any) -> None:
        seen.append(event)

    app[EVENTS].subscribe(keep)
    return seen
