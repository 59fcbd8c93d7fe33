"""Prepared statements (lms/prepared.py): the same rows as the plain statement, on every pooled connection."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from sqlalchemy import bindparam, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from lms.courses.queries import _course_page, list_courses
from lms.db import Database
from lms.enrollments.queries import _STUDENT_ENROLLMENTS, list_student_enrollments
from lms.prepared import Prepared
from lms.tables import users
from tests.builders import make_course, make_enrollment, make_user
from tests.conftest import Servers

# A "%" literal, an IN list, a typed and an untyped parameter: everything the translation to $n touches.
STATEMENT = (
    select(users.c.id, users.c.email, literal("100%").label("literal"))
    .where(
        users.c.email.like(bindparam("pattern")),
        users.c.role.in_(("student", "instructor")),
        users.c.id != bindparam("not_id", type_=users.c.id.type),
    )
    .order_by(users.c.email)
)
EXAMPLE = {"pattern": "%", "not_id": uuid.UUID(int=0)}


async def test_prepared_rows_equal_the_plain_statement_on_every_connection(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    async with db.transaction() as conn:
        for i in range(3):
            await conn.execute(
                users.insert().values(email=f"p{i}-{tag}@example.com", password_hash="x", full_name="P", role="student")
            )
    prepared = Prepared(STATEMENT, EXAMPLE)
    params = {"pattern": f"%-{tag}@%", "not_id": uuid.uuid4()}
    async with db.connection() as conn:
        plain = await conn.fetch_all(STATEMENT, params)
    assert len(plain) == 3 and plain[0]["literal"] == "100%"

    async def read() -> list[dict[str, object]]:
        async with db.connection() as conn:
            first = await prepared.fetch_all(conn, params)
            await asyncio.sleep(0)
            again = await prepared.fetch_all(conn, params)  # EXECUTE only, on a connection that prepared it
            assert again == first
            return first

    # Concurrent readers hold several pooled connections: each prepares the statement once.
    results = await asyncio.gather(*(read() for _ in range(4)))
    assert all(rows == plain for rows in results)
    async with db.connection() as conn:
        assert await prepared.fetch_one(conn, params | {"pattern": "nobody@%"}) is None
        # Prepared once on this connection, not once per use (none behind a transaction pooler).
        sql = "SELECT count(*) FROM pg_prepared_statements WHERE name = %(name)s"
        assert await conn.fetch_val(sql, {"name": prepared.name}) == (1 if conn.server_prepared else 0)


def test_parameters_without_a_type_or_with_bind_processing_are_refused_when_the_statement_is_made() -> None:
    with pytest.raises(TypeError, match="no PostgreSQL type"):
        Prepared(STATEMENT, {"pattern": ["a list"], "not_id": uuid.UUID(int=0)})
    with pytest.raises(TypeError, match="bind processing"):
        Prepared(select(literal(1)).where(bindparam("doc", type_=JSONB) == bindparam("other", type_=JSONB)),
                 {"doc": {"a": 1}, "other": {"b": 2}})  # fmt: skip


async def test_behind_a_transaction_pooler_the_statement_runs_plain(db: Database, servers: Servers) -> None:
    # PgBouncer in transaction mode would hand the EXECUTE a server connection that never saw the
    # PREPARE; with database.transaction_pooler the same rows come from the plain statement.
    prepared = Prepared(STATEMENT, EXAMPLE)
    params = {"pattern": "%@%", "not_id": uuid.uuid4()}
    async with db.connection() as conn:
        plain = await conn.fetch_all(STATEMENT, params)
    pooled = await Database.connect(servers.database_url, min_size=1, max_size=1, transaction_pooler=True)
    try:
        async with pooled.connection() as conn:
            assert await prepared.fetch_all(conn, params) == plain
            sql = "SELECT count(*) FROM pg_prepared_statements WHERE name = %(name)s"
            assert await conn.fetch_val(sql, {"name": prepared.name}) == 0
    finally:
        await pooled.close()


async def test_every_catalogue_and_my_courses_page_prepares_and_matches_the_plain_statement(db: Database) -> None:
    # The catalogue (GET /courses) and a student's courses (GET /enrollments/my-courses) run prepared:
    # every combination of filters gives the rows its plain statement gives.
    tag = uuid.uuid4().hex[:8]
    instructor = await make_user(db, role="instructor")
    student = await make_user(db)
    made = [
        await make_course(
            db, instructor, title=f"Algebra {tag} {i}", category=("math", "art")[i % 2],
            difficulty_level=("beginner", "advanced")[i % 2], is_published=i != 3,
        )
        for i in range(5)
    ]  # fmt: skip
    for i, course in enumerate(made[:3]):
        await make_enrollment(db, student, course, status=("active", "completed")[i % 2])
    filters = {"instructor_id": instructor["id"], "category": "math", "difficulty_level": "beginner", "q": tag}
    statements = []
    async with db.connection() as conn:
        for published_only, *used in itertools.product((False, True), repeat=5):
            chosen = {name: value for (name, value), on in zip(filters.items(), used, strict=True) if on}
            for limit, offset in ((2, 0), (2, 2), (50, 40)):
                rows, total = await list_courses(
                    conn, limit=limit, offset=offset, published_only=published_only, **chosen
                )
                page = _course_page(published_only, *used)
                plain = await conn.fetch_all(page.stmt, chosen | {"limit": limit, "offset": offset})
                assert rows == [{k: v for k, v in r.items() if k != "total"} for r in plain]
                assert total >= len(rows) and (not plain or total == plain[0]["total"])
            statements.append(page)
        expected = {True: 4, False: 5}
        everything, total = await list_courses(conn, limit=50, offset=0, published_only=False, q=tag)
        assert total == expected[False] == len(everything)
        assert (await list_courses(conn, limit=50, offset=0, q=tag))[1] == expected[True]
        for status in (None, "active", "completed"):
            page, _ = _STUDENT_ENROLLMENTS[status is not None]
            params = {"student_id": student["id"]} | ({} if status is None else {"status": status})
            rows, total = await list_student_enrollments(
                conn, student_id=student["id"], status=status, limit=2, offset=0
            )
            plain = await conn.fetch_all(page.stmt, params | {"limit": 2, "offset": 0})
            assert [r["id"] for r in rows] == [r["id"] for r in plain]
            assert total == {None: 3, "active": 2, "completed": 1}[status]
            assert all(r["course__instructor_id"] == instructor["id"] for r in rows)  # labelled, as page_json reads it
            statements.append(page)
        sql = "SELECT count(*) FROM pg_prepared_statements WHERE name = ANY(%(names)s)"
        prepared_here = await conn.fetch_val(sql, {"names": [s.name for s in statements]})
        assert prepared_here == (len({s.name for s in statements}) if conn.server_prepared else 0)
