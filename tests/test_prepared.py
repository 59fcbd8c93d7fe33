"""Prepared statements (lms/prepared.py): the same rows as the plain statement, on every pooled connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import bindparam, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from lms.db import Database
from lms.prepared import Prepared
from lms.tables import users
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
        # Prepared once on this connection, not once per use.
        sql = "SELECT count(*) FROM pg_prepared_statements WHERE name = %(name)s"
        assert await conn.fetch_val(sql, {"name": prepared.name}) == 1


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
