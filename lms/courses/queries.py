"""Courses and lessons: plain async queries taking a connection; callers own transactions."""

from __future__ import annotations

import functools
import re
import secrets
import unicodedata
import uuid
from typing import Any, Literal

from anyascii import anyascii
from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.sql import ColumnElement

from lms.db import Connection, IntegrityViolation, Row, is_unique_violation
from lms.enrollments.studying import STUDYING, studies
from lms.prepared import Prepared
from lms.tables import courses, enrollments, lessons

# Enrollments that still hold a place in the course (a delete must not erase them silently):
# the students who study it, and those who are paying for it.
HOLDING_STATUSES = (*STUDYING, "pending_payment")
SLUG_MAX = 200
SLUG_ATTEMPTS = 5

Lock = Literal["update", "exclusive"] | None

COURSE_COLUMNS = [c for c in courses.c if c.name != "search_vector"]


def _latin_to_ascii(ch: str) -> str:
    # Every Latin letter the same way: accents decompose (é), the rest
    # (ø, ł, ß, æ) are transliterated; letters of other scripts are kept.
    if ch.isascii() or not unicodedata.name(ch, "").startswith("LATIN "):
        return ch
    return str(anyascii(ch))


def slugify(title: str, fallback: str = "course") -> str:
    """Lowercase words joined by hyphens; Latin letters in ASCII (``cøurse`` → ``course``), other scripts kept."""
    decomposed = unicodedata.normalize("NFKD", title)
    stripped = "".join(_latin_to_ascii(ch) for ch in decomposed if not unicodedata.combining(ch))
    slug = re.sub(r"[\W_]+", "-", stripped.lower()).strip("-")
    return slug[:SLUG_MAX].strip("-") or fallback


def next_slug(base: str, taken: set[str]) -> str:
    """``base``, else ``base-2``, ``base-3`` ... after the highest suffix in use."""
    if base not in taken:
        return base
    pattern = re.compile(re.escape(base) + r"-(\d+)")
    numbers = [int(m.group(1)) for s in taken if (m := pattern.fullmatch(s))]
    return f"{base}-{max(numbers, default=1) + 1}"


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"


async def _taken_slugs(conn: Connection, column: Any, base: str, *where: ColumnElement[bool]) -> set[str]:
    rows = await conn.fetch_all(
        select(column).where((column == base) | column.like(_like_prefix(base), escape="\\"), *where)
    )
    return {r[column.name] for r in rows}


async def insert_with_slug(
    conn: Connection, table: Any, values: dict[str, Any], *, constraint: str, scope: ColumnElement[bool] | None = None
) -> Row:
    """Insert a row whose slug is derived from its title, de-duplicated.

    Creators of one base slug take turns (a transaction-scoped advisory
    lock), so each sees the suffixes the previous one committed. A slug that
    still collides (``python-2`` from the title "Python 2" against the second
    "Python") is refused by the unique constraint and the next one is tried,
    inside a savepoint so that the caller's transaction survives.
    """
    base = slugify(values["title"])
    where = [] if scope is None else [scope]
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"slug:{table.name}:{base}", 0))))
    for attempt in range(SLUG_ATTEMPTS):
        slug = next_slug(base, await _taken_slugs(conn, table.c.slug, base, *where))
        if attempt == SLUG_ATTEMPTS - 1:
            slug = f"{base[: SLUG_MAX - 9]}-{secrets.token_hex(4)}"
        try:
            async with conn.transaction():
                row = await conn.fetch_one(insert(table).values(**values, slug=slug).returning(*_columns(table)))
        except IntegrityViolation as err:
            if is_unique_violation(err, constraint):
                continue
            raise
        assert row is not None
        return row
    raise RuntimeError("no free slug found")  # pragma: no cover - the random suffix makes this unreachable


def _columns(table: Any) -> list[Any]:
    return COURSE_COLUMNS if table is courses else list(table.c)


async def create_course(conn: Connection, *, instructor_id: uuid.UUID, **values: Any) -> Row:
    return await insert_with_slug(
        conn, courses, {**values, "instructor_id": instructor_id}, constraint="uq_courses_slug"
    )


async def get_course(
    conn: Connection, *, course_id: uuid.UUID | None = None, slug: str | None = None, lock: Lock = None
) -> Row | None:
    """By id or by slug, optionally locking the row for the rest of the transaction.

    ``"update"`` (FOR NO KEY UPDATE) serializes changes to the course and its
    lessons without blocking enrollments' foreign-key checks; ``"exclusive"``
    (FOR UPDATE) blocks those too, for a delete that must see every enrollment.
    """
    stmt = select(*COURSE_COLUMNS)
    stmt = stmt.where(courses.c.id == course_id) if course_id is not None else stmt.where(courses.c.slug == slug)
    if lock == "update":
        stmt = stmt.with_for_update(key_share=True)
    elif lock == "exclusive":
        stmt = stmt.with_for_update()
    return await conn.fetch_one(stmt)


async def update_course(conn: Connection, course_id: uuid.UUID, values: dict[str, Any]) -> Row | None:
    if not values:
        return await get_course(conn, course_id=course_id)
    return await conn.fetch_one(
        update(courses).where(courses.c.id == course_id).values(**values).returning(*COURSE_COLUMNS)
    )


async def count_holding_enrollments(conn: Connection, course_id: uuid.UUID) -> int:
    return int(
        await conn.fetch_val(
            select(func.count())
            .select_from(enrollments)
            .where(enrollments.c.course_id == course_id, enrollments.c.status.in_(HOLDING_STATUSES))
        )
    )


async def delete_course(conn: Connection, course_id: uuid.UUID) -> None:
    await conn.execute(delete(courses).where(courses.c.id == course_id))


async def publish_course(conn: Connection, course_id: uuid.UUID) -> Row | None:
    """Published only when it has a published lesson; None otherwise."""
    has_lesson = exists().where(lessons.c.course_id == courses.c.id, lessons.c.is_published)
    return await conn.fetch_one(
        update(courses)
        .where(courses.c.id == course_id, has_lesson)
        .values(is_published=True, published_at=func.coalesce(courses.c.published_at, func.now()))
        .returning(*COURSE_COLUMNS)
    )


async def unpublish_course(conn: Connection, course_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(
        update(courses).where(courses.c.id == course_id).values(is_published=False).returning(*COURSE_COLUMNS)
    )


async def list_courses(
    conn: Connection,
    *,
    limit: int,
    offset: int,
    published_only: bool = True,
    instructor_id: uuid.UUID | None = None,
    category: str | None = None,
    difficulty_level: str | None = None,
    q: str | None = None,
) -> tuple[list[Row], int]:
    search = q if q is not None and q.strip() else None
    filters = {"instructor_id": instructor_id, "category": category, "difficulty_level": difficulty_level, "q": search}
    params = {name: value for name, value in filters.items() if value is not None}
    # One statement per combination, in the order of _FILTER_EXAMPLES (that of _course_conditions).
    shape = (published_only, *(name in params for name in _FILTER_EXAMPLES))
    rows = await _course_page(*shape).fetch_all(conn, params | {"limit": limit, "offset": offset})
    if rows or offset == 0:
        total = rows[0].pop("total") if rows else 0
        for row in rows[1:]:
            del row["total"]
        return rows, int(total)
    # Past the last page: the count alone.
    return [], int(await conn.fetch_val(_course_count(*shape), params))


def _course_conditions(
    published_only: bool, instructor: bool, category: bool, difficulty: bool, search: bool
) -> tuple[list[ColumnElement[bool]], list[Any]]:
    conditions: list[ColumnElement[bool]] = []
    if published_only:
        conditions.append(courses.c.is_published)
    if instructor:
        conditions.append(courses.c.instructor_id == bindparam("instructor_id", type_=courses.c.instructor_id.type))
    if category:
        conditions.append(courses.c.category == bindparam("category", type_=courses.c.category.type))
    if difficulty:
        level = bindparam("difficulty_level", type_=courses.c.difficulty_level.type)
        conditions.append(courses.c.difficulty_level == level)
    order: list[Any] = []
    if search:
        query = func.websearch_to_tsquery(literal_column("'simple'::regconfig"), bindparam("q", type_=Text))
        conditions.append(courses.c.search_vector.op("@@")(query))
        order.append(func.ts_rank(courses.c.search_vector, query).desc())
    # Newest first; DESC on both columns so that an index scans it backwards.
    recent = courses.c.published_at if published_only else courses.c.created_at
    return conditions, [*order, recent.desc(), courses.c.id.desc()]


# Examples of the catalogue's filter values (lms/prepared.py declares each parameter's type from one).
_FILTER_EXAMPLES = {"instructor_id": uuid.UUID(int=0), "category": "", "difficulty_level": "", "q": ""}


# Built and prepared once per combination of filters (the catalogue is the hottest read): building a
# statement cost more than running it, and PostgreSQL's parsing and planning more than its execution
# (bench/learning.py). The page carries the count of all matches (a window over the same scan: one round trip).
@functools.cache
def _course_page(published_only: bool, *filters: bool) -> Prepared:
    conditions, order = _course_conditions(published_only, *filters)
    page = (
        select(*COURSE_COLUMNS, func.count().over().label("total"))
        .where(*conditions)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    example = {name: value for (name, value), used in zip(_FILTER_EXAMPLES.items(), filters, strict=True) if used}
    return Prepared(page, example | {"limit": 1, "offset": 0})


@functools.cache
def _course_count(*shape: bool) -> Any:
    conditions, _ = _course_conditions(*shape)
    return select(func.count()).select_from(courses).where(*conditions)


# --- lessons -----------------------------------------------------------------


async def get_lesson(conn: Connection, lesson_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(lessons).where(lessons.c.id == lesson_id))


async def list_lessons(conn: Connection, course_id: uuid.UUID, *, published_only: bool) -> list[Row]:
    conditions = [lessons.c.course_id == course_id]
    if published_only:
        conditions.append(lessons.c.is_published)
    return await conn.fetch_all(select(lessons).where(*conditions).order_by(lessons.c.position))


async def count_lessons(conn: Connection, course_id: uuid.UUID) -> int:
    return int(await conn.fetch_val(select(func.count()).select_from(lessons).where(lessons.c.course_id == course_id)))


async def _shift(conn: Connection, course_id: uuid.UUID, *, start: int, end: int | None, by: int) -> None:
    """Move positions in [start, end] by ``by`` (the unique (course_id, position) is checked at commit)."""
    where = [lessons.c.course_id == course_id, lessons.c.position >= start]
    if end is not None:
        where.append(lessons.c.position <= end)
    await conn.execute(update(lessons).where(*where).values(position=lessons.c.position + by))


async def create_lesson(conn: Connection, course_id: uuid.UUID, order: int | None, **values: Any) -> Row:
    """Append, or insert at ``order`` (1-based) and push the later lessons down.

    The caller holds the course row lock: lesson structure changes of one
    course are serialized, so positions stay 1..n.
    """
    count = await count_lessons(conn, course_id)
    position = count + 1 if order is None else min(order, count + 1)
    if position <= count:
        await _shift(conn, course_id, start=position, end=None, by=1)
    return await insert_with_slug(
        conn,
        lessons,
        {**values, "course_id": course_id, "position": position},
        constraint="uq_lessons_course_id_slug",
        scope=lessons.c.course_id == course_id,
    )


async def update_lesson(conn: Connection, lesson: Row, values: dict[str, Any]) -> Row:
    """Change fields; ``order`` moves the lesson (caller holds the course lock)."""
    order = values.pop("order", None)
    if order is not None:
        count = await count_lessons(conn, lesson["course_id"])
        old, new = lesson["position"], min(order, count)
        if new < old:
            await _shift(conn, lesson["course_id"], start=new, end=old - 1, by=1)
        elif new > old:
            await _shift(conn, lesson["course_id"], start=old + 1, end=new, by=-1)
        if new != old:
            values["position"] = new
    if not values:
        return lesson
    row = await conn.fetch_one(update(lessons).where(lessons.c.id == lesson["id"]).values(**values).returning(lessons))
    assert row is not None
    return row


async def delete_lesson(conn: Connection, lesson: Row) -> None:
    await conn.execute(delete(lessons).where(lessons.c.id == lesson["id"]))
    await _shift(conn, lesson["course_id"], start=lesson["position"] + 1, end=None, by=-1)


async def reorder_lessons(conn: Connection, course_id: uuid.UUID, lesson_ids: list[uuid.UUID]) -> list[Row]:
    """One statement gives every lesson its new place (positions checked at commit)."""
    positions = case({lesson_id: index for index, lesson_id in enumerate(lesson_ids, start=1)}, value=lessons.c.id)
    await conn.execute(update(lessons).where(lessons.c.course_id == course_id).values(position=positions))
    return await list_lessons(conn, course_id, published_only=False)


async def lesson_ids(conn: Connection, course_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await conn.fetch_all(select(lessons.c.id).where(lessons.c.course_id == course_id))
    return {r["id"] for r in rows}


async def has_lesson_access(conn: Connection, *, course_id: uuid.UUID, student_id: uuid.UUID) -> bool:
    """Studying the course (:mod:`lms.enrollments.studying`) opens every lesson's content."""
    return bool(await conn.fetch_val(select(studies(course_id=course_id, student_id=student_id))))
