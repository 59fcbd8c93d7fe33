"""The aiopg + SQLAlchemy Core layer against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pickle
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from lms.db import (
    Database,
    DatabaseUnavailable,
    IntegrityViolation,
    StatementTimeout,
    is_unique_violation,
    parse_uuid,
)
from lms.tables import courses, payment_events, users


async def make_user(conn, **overrides):  # type: ignore[no-untyped-def]
    values = {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "password_hash": "x", "full_name": "Ada"} | overrides
    return await conn.fetch_one(insert(users).values(**values).returning(users))


async def test_insert_fills_python_defaults_and_returns_the_row(db: Database) -> None:
    async with db.transaction() as conn:
        row = await make_user(conn, metadata={"locale": "ar", "tags": ["a", "b"]})
    assert isinstance(row["id"], uuid.UUID)
    assert row["role"] == "student" and row["is_active"] is True
    assert row["created_at"].tzinfo is not None
    assert row["metadata"] == {"locale": "ar", "tags": ["a", "b"]}


@given(st.uuids())
def test_parsed_uuids_are_the_uuids_the_standard_library_makes(value: uuid.UUID) -> None:
    expected = uuid.UUID(str(value))
    parsed = parse_uuid(str(value))
    assert type(parsed) is uuid.UUID
    assert parsed == expected and hash(parsed) == hash(expected)
    assert (str(parsed), repr(parsed), parsed.is_safe, parsed.version) == (
        str(expected),
        repr(expected),
        expected.is_safe,
        expected.version,
    )
    assert pickle.loads(pickle.dumps(parsed)) == expected and copy.deepcopy(parsed) == expected  # noqa: S301 (our own bytes)
    assert not (parsed < expected) and not (parsed > expected)
    with pytest.raises(TypeError):
        parsed.int = 0  # type: ignore[misc]


async def test_uuid_columns_and_arrays_come_back_as_uuids(db: Database) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with db.connection() as conn:
        row = await conn.fetch_one(
            "SELECT %(one)s::uuid AS one, %(many)s::uuid[] AS many, NULL::uuid AS none, ARRAY[NULL]::uuid[] AS holes",
            {"one": ids[0], "many": ids},
        )
    assert row == {"one": ids[0], "many": ids, "none": None, "holes": [None]}
    assert all(type(v) is uuid.UUID for v in [row["one"], *row["many"]])


async def test_jsonb_and_numeric_round_trip(db: Database) -> None:
    async with db.transaction() as conn:
        teacher = await make_user(conn, role="instructor")
        course = await conn.fetch_one(
            insert(courses)
            .values(title="Python", slug="python", instructor_id=teacher["id"], price_amount=Decimal("49.00"),
                    price_currency="USD", metadata={"nested": {"k": [1, 2]}})
            .returning(courses)
        )  # fmt: skip
    assert course["price_amount"] == Decimal("49.00")
    assert course["metadata"] == {"nested": {"k": [1, 2]}}


async def test_in_lists_expand(db: Database) -> None:
    async with db.transaction() as conn:
        ids = [(await make_user(conn))["id"] for _ in range(3)]
        for n in (1, 3):  # same statement shape, different list lengths: one cache entry
            rows = await conn.fetch_all(select(users.c.id).where(users.c.id.in_(ids[:n])))
            assert {r["id"] for r in rows} == set(ids[:n])
        assert await conn.fetch_all(select(users.c.id).where(users.c.id.in_([]))) == []


async def test_compiled_statements_are_cached(db: Database) -> None:
    from lms import db as dbmodule

    async with db.connection() as conn:
        user = await make_user(conn)
        before = dbmodule._cache.hits
        for _ in range(5):
            row = await conn.fetch_one(select(users).where(users.c.id == user["id"]))
            assert row is not None and row["id"] == user["id"]
    assert dbmodule._cache.hits - before >= 4


async def test_update_with_returning_and_onupdate(db: Database) -> None:
    async with db.transaction() as conn:
        user = await make_user(conn)
        row = await conn.fetch_one(
            update(users).where(users.c.id == user["id"]).values(full_name="Grace").returning(users.c.full_name)
        )
    assert row == {"full_name": "Grace"}


async def test_on_conflict_do_nothing_is_idempotent(db: Database) -> None:
    stmt = (
        pg_insert(payment_events)
        .values(gateway="stripe", event_id="evt_1", payload={"id": "evt_1"})
        .on_conflict_do_nothing(index_elements=["gateway", "event_id"])
        .returning(payment_events.c.id)
    )
    async with db.transaction() as conn:
        first = await conn.fetch_one(stmt)
        second = await conn.fetch_one(stmt)
        count = await conn.fetch_val(select(func.count()).select_from(payment_events))
    assert first is not None and second is None and count == 1


async def test_unique_violation_names_the_constraint(db: Database) -> None:
    async with db.transaction() as conn:
        await make_user(conn, email="same@example.com")
    with pytest.raises(IntegrityViolation) as caught:
        async with db.transaction() as conn:
            await make_user(conn, email="same@example.com")
    assert is_unique_violation(caught.value, "uq_users_email")


async def test_error_rolls_back_the_whole_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await make_user(conn, email="gone@example.com")
            raise RuntimeError("boom")
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(users)) == 0


async def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    async with db.transaction() as conn:
        await make_user(conn, email="kept@example.com")
        with pytest.raises(IntegrityViolation):
            async with conn.transaction():
                await make_user(conn, email="kept@example.com")
        await make_user(conn, email="also@example.com")
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(users)) == 2


async def test_check_constraints_refuse_bad_enums(db: Database) -> None:
    with pytest.raises(IntegrityViolation) as caught:
        async with db.transaction() as conn:
            await make_user(conn, role="superuser")
    assert caught.value.constraint == "ck_users_role_valid"


@contextlib.asynccontextmanager
async def one_connection(servers, size: int = 1, **settings) -> AsyncIterator[Database]:  # type: ignore[no-untyped-def]
    """A pool of a single connection (or ``size``) to the test database (through PgBouncer when the suite runs so)."""
    database = await Database.connect(
        servers.database_url, min_size=1, max_size=size, transaction_pooler=servers.transaction_pooler, **settings
    )
    try:
        yield database
    finally:
        await database.close()


async def test_connections_given_back_are_reused_and_the_pool_stays_within_its_size(servers) -> None:  # type: ignore[no-untyped-def]
    async with one_connection(servers, size=3) as database:
        used: set[object] = set()

        async def checkout() -> None:
            async with database.connection() as conn:
                used.add(conn.raw)
                await conn.fetch_val("SELECT pg_sleep(0.01)")  # held a while, so that checkouts overlap

        await asyncio.gather(*(checkout() for _ in range(20)))
        assert len(used) == 3  # 20 overlapping checkouts, 3 connections
        assert (database.size, database.free) == (3, 3)
        async with database.connection() as conn:
            assert conn.raw in used


async def test_the_connections_opened_at_start_serve_the_first_checkouts(servers) -> None:  # type: ignore[no-untyped-def]
    if servers.transaction_pooler:
        pytest.skip("behind a transaction pooler a statement's backend is the pooler's choice")
    database = await Database.connect(servers.database_url, min_size=2, max_size=2)
    try:
        async with database.connection() as clock:
            opened_by = await clock.fetch_val("SELECT clock_timestamp()")
        started = "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        async with database.connection() as first, database.connection() as second:
            assert await first.fetch_val(started) < opened_by
            assert await second.fetch_val(started) < opened_by
        assert database.size == 2
    finally:
        await database.close()


async def test_a_connection_left_inside_a_transaction_is_not_handed_out_again(servers) -> None:  # type: ignore[no-untyped-def]
    async with one_connection(servers) as database:
        async with database.connection() as conn:
            await conn.execute("BEGIN")
            left = conn.raw
        async with database.connection() as conn:
            assert conn.raw is not left
            assert await conn.fetch_val("SELECT count(*) FROM users WHERE false") == 0  # not an aborted transaction
        assert left.closed
        assert database.size == 1


async def test_a_closed_pool_refuses_checkouts_and_closes_what_comes_back(servers) -> None:  # type: ignore[no-untyped-def]
    database = await Database.connect(
        servers.database_url, min_size=2, max_size=2, transaction_pooler=servers.transaction_pooler
    )
    async with database.connection() as conn:
        await database.close()
        assert await conn.fetch_val("SELECT 1") == 1  # a checkout under way finishes its work
        held = conn.raw
    assert held.closed
    assert database.size == 0
    with pytest.raises(DatabaseUnavailable, match="closed"):
        async with database.connection():
            pass


async def test_statement_timeout_is_a_clear_error_and_the_connection_survives(servers) -> None:  # type: ignore[no-untyped-def]
    async with one_connection(servers, statement_timeout_ms=200) as database, database.connection() as conn:
        # In a transaction: the timeout holds directly on PostgreSQL and behind PgBouncer (SET LOCAL).
        with pytest.raises(StatementTimeout):
            async with conn.transaction():
                await conn.execute(text("SELECT pg_sleep(2)"))
        assert await conn.fetch_val("SELECT 1") == 1
        if not servers.transaction_pooler:  # behind a pooler, the role's default applies (README)
            with pytest.raises(StatementTimeout):
                await conn.execute(text("SELECT pg_sleep(2)"))
            assert await conn.fetch_val("SELECT 1") == 1


async def test_killed_connection_is_a_clear_error_and_the_pool_recovers(servers) -> None:  # type: ignore[no-untyped-def]
    pooled = servers.transaction_pooler
    database = await Database.connect(servers.database_url, min_size=1, max_size=1, transaction_pooler=pooled)
    try:
        async with database.connection() as conn:
            pid = await conn.fetch_val("SELECT pg_backend_pid()")
            # Directly on PostgreSQL: through a transaction pooler the killer might be handed that very backend.
            direct = servers.postgres.url("lms_test") if pooled and servers.postgres else servers.database_url
            killer = await Database.connect(direct, min_size=1, max_size=1)
            async with killer.connection() as other:
                await other.fetch_val(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await killer.close()
            if pooled:
                # PgBouncer gives the next statement another server connection, or, if it has not yet
                # seen the backend go, fails it ("server conn crashed?") and drops this client: either
                # is a clear outcome, and the pool recovers below.
                with contextlib.suppress(DatabaseUnavailable):
                    assert await asyncio.wait_for(conn.fetch_val("SELECT 1"), 5) == 1
            else:
                with pytest.raises(DatabaseUnavailable):
                    await asyncio.wait_for(conn.fetch_val("SELECT 1"), 5)
        # The dead connection went back closed and was dropped; a new one is made.
        async with database.connection() as conn:
            assert await conn.fetch_val("SELECT 1") == 1
            assert await conn.fetch_val("SELECT pg_backend_pid()") != pid
    finally:
        await database.close()


async def test_checkouts_are_served_in_arrival_order(servers) -> None:  # type: ignore[no-untyped-def]
    """A request that waited for a connection is not overtaken by one that asks later."""
    order: list[str] = []
    latecomers: list[asyncio.Task[None]] = []

    async def checkout(name: str, then_ask_again: bool) -> None:
        async with database.connection() as conn:
            order.append(name)
            assert await conn.fetch_val("SELECT 1") == 1
        if then_ask_again:  # someone arrives just as the connection goes back, before the next in line runs
            latecomers.append(asyncio.create_task(checkout(f"late {name}", False)))

    async with one_connection(servers) as database:
        async with database.connection():
            waiting = []
            for n in range(5):
                waiting.append(asyncio.create_task(checkout(f"waited {n}", True)))
                for _ in range(5):  # let it reach the queue before the next one starts
                    await asyncio.sleep(0)
        await asyncio.gather(*waiting)
        await asyncio.gather(*latecomers)
    assert order == [f"waited {n}" for n in range(5)] + [f"late waited {n}" for n in range(5)]


async def test_a_checkout_that_gives_up_waiting_keeps_no_place(servers) -> None:  # type: ignore[no-untyped-def]
    async with one_connection(servers, acquire_timeout=0.2) as database:
        async with database.connection():
            for _ in range(3):
                with pytest.raises(DatabaseUnavailable, match="timed out"):
                    async with database.connection():
                        pass
            cancelled = asyncio.create_task(database.connection().__aenter__())
            await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        # Neither the timed-out nor the cancelled waiter holds the one place.
        async with database.connection() as conn:
            assert await conn.fetch_val("SELECT 1") == 1


async def test_unreachable_database_is_a_clear_error() -> None:
    # The error a checkout gives when the database is gone, with libpq's reason.
    with pytest.raises(DatabaseUnavailable, match=r"could not connect|No such file|Connection refused|timed out"):
        await Database.connect("postgresql://nobody@127.0.0.1:1/none", min_size=1, max_size=1, connect_timeout=1)
