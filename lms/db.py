"""SQLAlchemy 2.x Core statements executed on aiopg.

``aiopg.sa`` does not work with SQLAlchemy 2, so this module does the part of
an engine we need: compile for psycopg2 (cached by SQLAlchemy's own cache
key, because compiling costs more than the query), fill Python-side column
defaults, apply bind processors (JSONB needs ``json.dumps``), expand ``IN``
lists, and map rows to dicts. Queries are plain async functions taking a
:class:`Connection`; callers own transactions::

    async with db.transaction() as conn:
        row = await conn.fetch_one(select(users).where(users.c.id == user_id))
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiopg
import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
import psycopg2.extras
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

log = logging.getLogger(__name__)

Row = dict[str, Any]

DIALECT: Dialect = postgresql.psycopg2.dialect()  # type: ignore[attr-defined,no-untyped-call]
COMPILE_CACHE_SIZE = 2000


_new_object, _set_slot, _UNKNOWN_SAFETY = object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def parse_uuid(text: str | None, _cursor: Any = None) -> uuid.UUID | None:
    """psycopg2's typecaster for ``uuid`` columns: PostgreSQL's canonical text as a :class:`uuid.UUID`.

    ``uuid.UUID(text)`` (psycopg2's own caster) strips braces and ``urn:`` prefixes
    PostgreSQL never sends, and was a tenth of a page of enrollments' CPU (py-spy,
    bench/learning.py); this fills the same two slots ``UUID.__setstate__`` does, in
    about 60 % of the time. tests/test_db.py holds it equal to ``uuid.UUID(text)``.
    """
    if text is None:
        return None
    value = _new_object(uuid.UUID)
    _set_slot(value, "int", int(text.replace("-", ""), 16))
    _set_slot(value, "is_safe", _UNKNOWN_SAFETY)
    return value


# Registered for every psycopg2 connection of the process (the pools below
# turn aiopg's per-connection registration off, which would take precedence).
UUID_TYPE = psycopg2.extensions.new_type((2950,), "UUID", parse_uuid)  # type: ignore[arg-type]  # text, never bytes
psycopg2.extensions.register_type(UUID_TYPE)
psycopg2.extensions.register_type(psycopg2.extensions.new_array_type((2951,), "UUID[]", UUID_TYPE))
psycopg2.extensions.register_adapter(uuid.UUID, psycopg2.extras.UUID_adapter)


class DatabaseError(Exception):
    """Base for errors this module raises."""


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached or dropped the connection mid-query."""


class StatementTimeout(DatabaseError):
    """A statement ran past ``statement_timeout`` and PostgreSQL cancelled it."""


class IntegrityViolation(DatabaseError):
    """A constraint refused the write; ``constraint`` names it."""

    def __init__(self, message: str, constraint: str | None, sqlstate: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.sqlstate = sqlstate


class _CompiledCache:
    """LRU of compiled statements keyed by SQLAlchemy's structural cache key."""

    def __init__(self, size: int = COMPILE_CACHE_SIZE) -> None:
        self._items: OrderedDict[Any, SQLCompiler] = OrderedDict()
        self._size = size
        self.hits = 0
        self.misses = 0

    def compile(self, stmt: ClauseElement) -> tuple[SQLCompiler, list[Any] | None]:
        key = stmt._generate_cache_key()
        if key is None:  # statement not cacheable (e.g. some text() constructs)
            self.misses += 1
            return stmt.compile(dialect=DIALECT), None  # type: ignore[return-value]
        # CacheKey itself is unhashable; its .key is the statement's structure.
        compiled = self._items.get(key.key)
        if compiled is None:
            self.misses += 1
            # With its cache key, construct_params() can map a later
            # statement's values onto this compiled form's bind parameters.
            compiled = stmt.compile(dialect=DIALECT, cache_key=key)  # type: ignore[assignment]
            self._items[key.key] = compiled  # type: ignore[assignment]
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        else:
            self.hits += 1
            self._items.move_to_end(key.key)
        return compiled, list(key.bindparams)  # type: ignore[return-value]


_cache = _CompiledCache()


def compile_statement(stmt: ClauseElement | str, params: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """Turn a Core statement into the SQL text and parameters psycopg2 takes."""
    if isinstance(stmt, str):
        return stmt, dict(params or {})
    compiled, extracted = _cache.compile(stmt)
    values = dict(compiled.construct_params(params, extracted_parameters=extracted, _check=False))
    _fill_python_defaults(compiled, values)
    if compiled.post_compile_params or compiled.literal_execute_params:
        expanded = compiled.construct_expanded_state(values)
        sql, values = expanded.statement, dict(expanded.parameters)
        processors: Mapping[str, Any] = expanded.processors
    else:
        sql, processors = compiled.string, compiled._bind_processors
    for name, process in processors.items():
        if name in values and values[name] is not None:
            values[name] = process(values[name])
    return sql, values


def _fill_python_defaults(compiled: SQLCompiler, values: dict[str, Any]) -> None:
    # construct_params() leaves Python-side defaults as None; an engine would
    # run them through the execution context. Scalar and callable defaults are
    # all this schema uses.
    for column in list(compiled.insert_prefetch) + list(compiled.update_prefetch):
        key = column.key
        if values.get(key) is not None:
            continue
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        if default is None:
            continue
        arg = default.arg  # type: ignore[attr-defined]
        values[key] = arg(None) if callable(arg) else arg


def _translate(err: Exception) -> Exception:
    if isinstance(err, psycopg2.IntegrityError):
        diag = getattr(err, "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        return IntegrityViolation(str(err).strip(), constraint, getattr(err, "pgcode", None))
    if isinstance(err, psycopg2.errors.QueryCanceled):
        return StatementTimeout("the statement ran past the configured statement_timeout")
    if isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError, asyncio.TimeoutError)):
        return DatabaseUnavailable(f"the database connection failed: {str(err).strip() or type(err).__name__}")
    return err


class Connection:
    """One pooled connection; statements in, dict rows out."""

    def __init__(self, raw: aiopg.Connection, begin: str = "BEGIN", *, server_prepared: bool = True) -> None:
        self.raw = raw
        self._begin = begin
        # False behind a transaction pooler: a PREPAREd statement would stay on
        # one server connection while the next transaction gets another (lms/prepared.py).
        self.server_prepared = server_prepared
        self.in_transaction = False
        # BEGIN travels with the transaction's first statement: one round trip fewer per transaction.
        self._begin_pending = False
        self._savepoints = 0
        # One cursor for every statement of this checkout: making one costs
        # more than a primary-key SELECT's whole client side.
        self._cursor: aiopg.Cursor | None = None

    async def _run(self, stmt: ClauseElement | str, params: Mapping[str, Any] | None) -> aiopg.Cursor:
        sql, values = compile_statement(stmt, params)
        if self._begin_pending:
            self._begin_pending = False
            sql = f"{self._begin}; {sql}"
        cur = self._cursor
        if cur is None or cur.closed:
            try:
                cur = self._cursor = await self.raw.cursor()
            except Exception as err:  # a dropped connection fails here already
                raise _translate(err) from err
        try:
            await cur.execute(sql, values)
        except asyncio.CancelledError:
            self.close()
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0:
                # aiopg turns PostgreSQL's QueryCanceled (statement_timeout)
                # into CancelledError although nobody cancelled this task.
                raise StatementTimeout("the statement ran past the configured statement_timeout") from None
            raise
        except Exception as err:
            self.close()
            raise _translate(err) from err
        return cur

    def close(self) -> None:
        """Close this checkout's cursor (the pool takes the connection back)."""
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    async def execute(self, stmt: Executable | str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; returns the number of rows it affected."""
        cur = await self._run(stmt, params)  # type: ignore[arg-type]
        return int(cur.rowcount)

    async def fetch_all(self, stmt: Executable | str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = await self._run(stmt, params)  # type: ignore[arg-type]
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def fetch_one(self, stmt: Executable | str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.fetch_all(stmt, params)
        return rows[0] if rows else None

    async def fetch_val(self, stmt: Executable | str, params: Mapping[str, Any] | None = None) -> Any:
        cur = await self._run(stmt, params)  # type: ignore[arg-type]
        row = await cur.fetchone()
        return None if row is None else row[0]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """BEGIN/COMMIT, or ROLLBACK on error; a nested call uses a savepoint."""
        if self.in_transaction:
            self._savepoints += 1
            name = f"sp_{self._savepoints}"
            await self.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if not self.raw.closed:
                    await self.execute(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            else:
                await self.execute(f"RELEASE SAVEPOINT {name}")
            return
        self.in_transaction = self._begin_pending = True
        try:
            yield self
        except BaseException:
            # A cancelled or dropped connection is already closed: ROLLBACK
            # would raise and hide the real error; the pool discards it.
            if not self._begin_pending and not self.raw.closed:
                try:
                    await self.execute("ROLLBACK")
                except DatabaseError:
                    log.warning("rollback failed; the connection is discarded", exc_info=True)
            raise
        else:
            if not self._begin_pending:  # a transaction that ran nothing has nothing to commit
                await self.execute("COMMIT")
        finally:
            self.in_transaction = self._begin_pending = False


class Database:
    """An aiopg pool that hands out :class:`Connection` objects."""

    def __init__(
        self, pool: aiopg.Pool, acquire_timeout: float, begin: str = "BEGIN", *, server_prepared: bool = True
    ) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self._begin = begin
        self._server_prepared = server_prepared
        # aiopg's maxsize 0 is "no limit".
        self._gate = asyncio.Semaphore(pool.maxsize or 1_000_000)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout_ms: int = 15_000,
        acquire_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        transaction_pooler: bool = False,
    ) -> Database:
        """A pool; connections run with ``statement_timeout`` and time zone UTC.

        Directly on PostgreSQL both are the connection's settings. Behind a
        pooler in transaction mode (PgBouncer ``pool_mode = transaction``) a
        server connection serves many clients, so nothing may be set per
        session: each transaction sets both with ``SET LOCAL`` in the round
        trip of its ``BEGIN``, and statements outside a transaction get the
        role's defaults (README "Scaling out": ``ALTER ROLE ... SET``).
        """
        # Client-side timeout sits above statement_timeout: PostgreSQL cancels
        # first and the connection survives; aiopg's cancel would close it.
        client_timeout = statement_timeout_ms / 1000 + 5
        session: dict[str, Any] = {}
        begin = "BEGIN"
        if transaction_pooler:
            begin = f"BEGIN; SET LOCAL statement_timeout = {int(statement_timeout_ms)}; SET LOCAL timezone = 'UTC'"
        else:
            session["options"] = f"-c statement_timeout={statement_timeout_ms} -c timezone=UTC"
        pool = await aiopg.create_pool(
            url,
            minsize=min_size,
            maxsize=max_size,
            timeout=client_timeout,
            pool_recycle=3600,
            connect_timeout=max(1, int(connect_timeout)),
            enable_uuid=False,  # parse_uuid above instead
            **session,
        )
        return cls(pool, acquire_timeout, begin, server_prepared=not transaction_pooler)

    @property
    def size(self) -> int:
        return int(self.pool.size)

    @property
    def free(self) -> int:
        return int(self.pool.freesize)

    @property
    def max_size(self) -> int:
        return int(self.pool.maxsize or 0)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection in autocommit mode (every statement commits on its own).

        Checkouts queue first come, first served: aiopg hands a released
        connection to whoever asks next, so a newcomer could take it from a
        request that had waited, over and over (at 50 clients on a 20-pool
        the slowest hundredth waited three times the median). The gate admits
        as many as the pool holds, in order; past it a connection is free or
        may be opened.
        """
        gate = self._gate
        try:
            if not gate.locked():  # nothing to wait for (the timer was a tenth of a checkout's cost)
                await gate.acquire()
                raw = await self._acquire_raw()
            else:
                async with asyncio.timeout(self.acquire_timeout):  # no task per checkout, unlike wait_for
                    await gate.acquire()
                    raw = await self._acquire_raw()
        except (TimeoutError, psycopg2.OperationalError) as err:
            raise DatabaseUnavailable(f"no database connection available: {str(err).strip() or 'timed out'}") from err
        conn = Connection(raw, self._begin, server_prepared=self._server_prepared)
        try:
            yield conn
        finally:
            conn.close()
            # aiopg drops a closed connection on release; the pool refills.
            self.pool.release(raw)
            gate.release()

    async def _acquire_raw(self) -> aiopg.Connection:
        """A pooled connection for a checkout already admitted by the gate."""
        try:
            return await self.pool.acquire()
        except BaseException:
            self._gate.release()
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetch_val("SELECT 1")

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()


def is_unique_violation(err: IntegrityViolation, constraint: str | None = None) -> bool:
    ok = err.sqlstate == psycopg2.errorcodes.UNIQUE_VIOLATION
    return ok and (constraint is None or err.constraint == constraint)
