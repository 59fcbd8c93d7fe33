"""Quizzes, questions and attempts: plain async queries taking a connection.

Courses, lessons, enrollments and users are looked up through their own
packages (:mod:`lms.courses.access`, :mod:`lms.enrollments.studying`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.sql import Select

from lms.db import Connection, Row
from lms.tables import courses, live_sessions, quiz_attempts, quiz_questions, quizzes

# -- quizzes -----------------------------------------------------------------


def _quiz_select() -> Select[Any]:
    question_count = (
        select(func.count())
        .select_from(quiz_questions)
        .where(quiz_questions.c.quiz_id == quizzes.c.id)
        .scalar_subquery()
        .label("question_count")
    )
    # A live session in its lobby or running: the quiz is being played live now.
    live_now = (
        exists().where(live_sessions.c.quiz_id == quizzes.c.id, live_sessions.c.status != "ended").label("live_now")
    )
    return select(quizzes, question_count, live_now, courses.c.instructor_id).join(
        courses, courses.c.id == quizzes.c.course_id
    )


QuizLock = Literal["share", "update"] | None


async def get_quiz(conn: Connection, quiz_id: uuid.UUID, *, lock: QuizLock = None) -> Row | None:
    """The quiz with its question count and the course's instructor.

    ``lock`` holds the quiz row until the transaction ends: ``"update"``
    (FOR UPDATE) for a delete that must see every attempt (new attempts'
    foreign-key checks wait for it), ``"share"`` (FOR KEY SHARE) for a start
    that must not lose its quiz between the checks and the insert.
    """
    stmt = _quiz_select().where(quizzes.c.id == quiz_id)
    if lock == "update":
        stmt = stmt.with_for_update(of=quizzes)
    elif lock == "share":
        stmt = stmt.with_for_update(of=quizzes, read=True, key_share=True)
    return await conn.fetch_one(stmt)


async def list_quizzes(
    conn: Connection,
    *,
    course_id: uuid.UUID,
    published_only: bool,
    lesson_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    conditions = [quizzes.c.course_id == course_id]
    if published_only:
        conditions.append(quizzes.c.is_published.is_(True))
    if lesson_id is not None:
        conditions.append(quizzes.c.lesson_id == lesson_id)
    total = await conn.fetch_val(select(func.count()).select_from(quizzes).where(*conditions))
    rows = await conn.fetch_all(
        _quiz_select().where(*conditions).order_by(quizzes.c.created_at, quizzes.c.id).limit(limit).offset(offset)
    )
    return rows, int(total)


async def create_quiz(conn: Connection, *, course_id: uuid.UUID, **values: Any) -> uuid.UUID:
    quiz_id: uuid.UUID = await conn.fetch_val(
        insert(quizzes).values(course_id=course_id, **values).returning(quizzes.c.id)
    )
    return quiz_id


async def update_quiz(conn: Connection, quiz_id: uuid.UUID, **values: Any) -> None:
    if values:
        await conn.execute(update(quizzes).where(quizzes.c.id == quiz_id).values(**values))


async def delete_quiz(conn: Connection, quiz_id: uuid.UUID) -> None:
    await conn.execute(delete(quizzes).where(quizzes.c.id == quiz_id))


async def count_attempts(conn: Connection, quiz_id: uuid.UUID) -> int:
    return int(
        await conn.fetch_val(select(func.count()).select_from(quiz_attempts).where(quiz_attempts.c.quiz_id == quiz_id))
    )


# -- questions ---------------------------------------------------------------

_ORDER = (quiz_questions.c.position, quiz_questions.c.created_at, quiz_questions.c.id)


async def list_questions(conn: Connection, *, quiz_id: uuid.UUID, limit: int, offset: int) -> tuple[list[Row], int]:
    condition = quiz_questions.c.quiz_id == quiz_id
    total = await conn.fetch_val(select(func.count()).select_from(quiz_questions).where(condition))
    rows = await conn.fetch_all(select(quiz_questions).where(condition).order_by(*_ORDER).limit(limit).offset(offset))
    return rows, int(total)


async def all_questions(conn: Connection, quiz_id: uuid.UUID) -> list[Row]:
    """Every question of the quiz, in the author's order."""
    return await conn.fetch_all(select(quiz_questions).where(quiz_questions.c.quiz_id == quiz_id).order_by(*_ORDER))


async def get_question(conn: Connection, question_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(quiz_questions).where(quiz_questions.c.id == question_id))


async def next_position(conn: Connection, quiz_id: uuid.UUID) -> int:
    last = await conn.fetch_val(select(func.max(quiz_questions.c.position)).where(quiz_questions.c.quiz_id == quiz_id))
    return 0 if last is None else int(last) + 1


async def create_question(conn: Connection, *, quiz_id: uuid.UUID, **values: Any) -> Row:
    row = await conn.fetch_one(insert(quiz_questions).values(quiz_id=quiz_id, **values).returning(quiz_questions))
    assert row is not None
    return row


async def update_question(conn: Connection, question_id: uuid.UUID, **values: Any) -> Row | None:
    if not values:
        return await get_question(conn, question_id)
    return await conn.fetch_one(
        update(quiz_questions).where(quiz_questions.c.id == question_id).values(**values).returning(quiz_questions)
    )


async def delete_question(conn: Connection, question_id: uuid.UUID) -> None:
    await conn.execute(delete(quiz_questions).where(quiz_questions.c.id == question_id))


# -- attempts ----------------------------------------------------------------

_timed_out = and_(quiz_attempts.c.status == "graded", quiz_attempts.c.submitted_at.is_(None)).label("timed_out")


def _attempt_select(for_update: bool = False) -> Select[Any]:
    stmt = select(quiz_attempts, _timed_out)
    return stmt.with_for_update(of=quiz_attempts) if for_update else stmt


async def get_attempt(conn: Connection, attempt_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    return await conn.fetch_one(_attempt_select(for_update).where(quiz_attempts.c.id == attempt_id))


async def open_attempt(
    conn: Connection, *, enrollment_id: uuid.UUID, quiz_id: uuid.UUID, for_update: bool = False
) -> Row | None:
    return await conn.fetch_one(
        _attempt_select(for_update).where(
            quiz_attempts.c.enrollment_id == enrollment_id,
            quiz_attempts.c.quiz_id == quiz_id,
            quiz_attempts.c.status == "in_progress",
        )
    )


async def next_attempt_number(conn: Connection, *, enrollment_id: uuid.UUID, quiz_id: uuid.UUID) -> int:
    last = await conn.fetch_val(
        select(func.max(quiz_attempts.c.attempt_number)).where(
            quiz_attempts.c.enrollment_id == enrollment_id, quiz_attempts.c.quiz_id == quiz_id
        )
    )
    return 1 if last is None else int(last) + 1


async def insert_attempt(conn: Connection, **values: Any) -> uuid.UUID:
    attempt_id: uuid.UUID = await conn.fetch_val(insert(quiz_attempts).values(**values).returning(quiz_attempts.c.id))
    return attempt_id


async def save_answers(conn: Connection, attempt_id: uuid.UUID, answers: dict[str, Any]) -> None:
    await conn.execute(update(quiz_attempts).where(quiz_attempts.c.id == attempt_id).values(answers=answers))


async def record_grade(conn: Connection, attempt_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(
        update(quiz_attempts)
        .where(quiz_attempts.c.id == attempt_id, quiz_attempts.c.status == "in_progress")
        .values(status="graded", **values)
    )


async def list_student_attempts(
    conn: Connection, *, quiz_id: uuid.UUID, student_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Row], int]:
    conditions = (quiz_attempts.c.quiz_id == quiz_id, quiz_attempts.c.student_id == student_id)
    total = await conn.fetch_val(select(func.count()).select_from(quiz_attempts).where(*conditions))
    rows = await conn.fetch_all(
        _attempt_select()
        .where(*conditions)
        .order_by(quiz_attempts.c.attempt_number.desc(), quiz_attempts.c.id)
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def lock_expired_attempts(conn: Connection, *, cutoff: datetime, limit: int) -> list[Row]:
    """Open attempts whose deadline passed before ``cutoff``, locked; rows another closer holds are skipped."""
    return await conn.fetch_all(
        select(quiz_attempts, _timed_out)
        .where(quiz_attempts.c.status == "in_progress", quiz_attempts.c.deadline < cutoff)
        .order_by(quiz_attempts.c.deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
