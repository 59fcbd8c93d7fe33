"""Uploaded files: plain async queries taking a connection."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select

from lms.db import Connection, Row
from lms.enrollments.studying import studies
from lms.tables import courses, lessons, uploaded_files


async def create_file(conn: Connection, **values: Any) -> Row:
    row = await conn.fetch_one(insert(uploaded_files).values(**values).returning(uploaded_files))
    assert row is not None
    return row


async def get_file(conn: Connection, file_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(uploaded_files).where(uploaded_files.c.id == file_id))


async def list_files(
    conn: Connection, uploader_id: uuid.UUID, *, folder: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    conditions = [uploaded_files.c.uploader_id == uploader_id]
    if folder is not None:
        conditions.append(uploaded_files.c.folder == folder)
    total = await conn.fetch_val(select(func.count()).select_from(uploaded_files).where(*conditions))
    rows = await conn.fetch_all(
        select(uploaded_files)
        .where(*conditions)
        .order_by(uploaded_files.c.created_at.desc(), uploaded_files.c.id)
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def delete_file(conn: Connection, file_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(delete(uploaded_files).where(uploaded_files.c.id == file_id).returning(uploaded_files))


async def lessons_using(conn: Connection, file_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch_all(select(lessons.c.id).where(lessons.c.file_id == file_id).order_by(lessons.c.id))
    return [r["id"] for r in rows]


async def seen_through_a_lesson(conn: Connection, file_id: uuid.UUID, *, user_id: uuid.UUID | None) -> bool:
    """Whether some lesson using the file shows its content to this caller (None: anonymous).

    The rule of the lesson routes: a published lesson of a published course
    shows its content when it is free or the caller studies the course
    (:mod:`lms.enrollments.studying`); the course's instructor sees every lesson of it.
    """
    published = and_(lessons.c.is_published, courses.c.is_published)
    open_to: list[Any] = [and_(published, lessons.c.is_free)]
    if user_id is not None:
        enrolled = studies(course_id=courses.c.id, student_id=user_id)
        open_to += [and_(published, enrolled), courses.c.instructor_id == user_id]
    query = select(
        exists()
        .select_from(lessons.join(courses, courses.c.id == lessons.c.course_id))
        .where(lessons.c.file_id == file_id, or_(*open_to))
    )
    return bool(await conn.fetch_val(query))
