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
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
KEPT_RESULT_ROWS = 1000
IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


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

    def __init__(
        self,
        raw: aiopg.Connection,
        begin: str = "BEGIN",
        *,
        server_prepared: bool = True,
        cursor: aiopg.Cursor | None = None,
    ) -> None:
        self.raw = raw
        self._begin = begin
        # False behind a transaction pooler: a PREPAREd statement would stay on
        # one server connection while the next transaction gets another (lms/prepared.py).
        self.server_prepared = server_prepared
        self.in_transaction = False
        # BEGIN travels with the transaction's first statement: one round trip fewer per transaction.
        self._begin_pending = False
        self._savepoints = 0
        # One cursor for every statement on this connection, kept by the pool
        # between checkouts: making one costs more than a primary-key SELECT's whole client side.
        self._cursor = cursor

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
        """Close the cursor (after a failed statement; the next statement makes a new one)."""
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


@dataclass(slots=True)
class _Pooled:
    """A connection of the pool, with the cursor its checkouts share and when it was last given back."""

    raw: aiopg.Connection
    idle_since: float
    cursor: aiopg.Cursor | None = None


class Database:
    """A pool of aiopg connections that hands out :class:`Connection` objects.

    The pool is ours, not aiopg's. A checkout and return there cost 20 µs of
    CPU (a timeout, a condition, a walk over every free connection, and a task
    per return to wake the next taker), and each checkout's new cursor about
    20 µs more; here 2.4 µs, cursor kept (``python -m bench.db``). A checkout
    takes the connection given back last, whose server-side caches are warm.

    Checkouts queue first come, first served: the gate admits as many as the
    pool holds, in order, so a request that waited is not overtaken by a
    newcomer (with aiopg's pool, at 50 clients on a pool of 20, the slowest
    hundredth waited three times the median). Past the gate a connection is
    free, or one is opened: the gate's size bounds the connections.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[aiopg.Connection]],
        *,
        max_size: int,
        acquire_timeout: float,
        recycle_seconds: float = 3600.0,
        begin: str = "BEGIN",
        server_prepared: bool = True,
    ) -> None:
        self._connect = connect
        self._max_size = max_size
        self.acquire_timeout = acquire_timeout
        self._recycle = recycle_seconds
        self._begin = begin
        self._server_prepared = server_prepared
        self._gate = asyncio.Semaphore(max_size)
        self._free: deque[_Pooled] = deque()
        self._size = 0  # open or opening
        self._closed = False

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
        """A pool of ``min_size`` connections now, up to ``max_size``; each runs with ``statement_timeout`` and UTC.

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

        def open_one() -> Awaitable[aiopg.Connection]:
            # aiopg.connect looked up per call: the tracing instrumentation patches it (lms/telemetry).
            return aiopg.connect(
                url,
                timeout=client_timeout,
                connect_timeout=max(1, int(connect_timeout)),
                enable_hstore=False,  # no hstore column; registering it cost a query per connection
                enable_uuid=False,  # parse_uuid above instead
                **session,
            )

        database = cls(
            open_one,
            max_size=max(1, max_size),
            acquire_timeout=acquire_timeout,
            begin=begin,
            server_prepared=not transaction_pooler,
        )
        try:
            for _ in range(min(min_size, max_size)):
                database._free.append(await database._open())
        except BaseException:
            await database.close()
            raise
        return database

    @property
    def size(self) -> int:
        return self._size

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def max_size(self) -> int:
        return self._max_size

    def connection(self) -> _Checkout:
        """``async with db.connection() as conn``: a connection in autocommit mode (every statement commits)."""
        return _Checkout(self)

    async def _check_out(self) -> _Pooled:
        gate = self._gate
        try:
            if not gate.locked():  # nothing to wait for (a timer was a tenth of a checkout's cost)
                await gate.acquire()
            else:
                async with asyncio.timeout(self.acquire_timeout):  # no task per checkout, unlike wait_for
                    await gate.acquire()
        except TimeoutError as err:
            raise DatabaseUnavailable("no database connection available: timed out") from err
        try:
            if self._closed:
                raise DatabaseUnavailable("the database pool is closed")
            return self._take() or await self._open()
        except BaseException:
            gate.release()
            raise

    def _take(self) -> _Pooled | None:
        """The connection given back last that is still good (its server-side caches are warm)."""
        now = time.monotonic()
        while self._free:
            pooled = self._free.pop()
            if not pooled.raw.closed and now - pooled.idle_since < self._recycle:
                return pooled
            self._discard(pooled)
        return None

    async def _open(self) -> _Pooled:
        self._size += 1
        try:
            return _Pooled(await self._connect(), idle_since=time.monotonic())
        except BaseException as err:
            self._size -= 1
            if isinstance(err, (psycopg2.OperationalError, TimeoutError)):
                reason = str(err).strip() or "timed out"
                raise DatabaseUnavailable(f"no database connection available: {reason}") from err
            raise

    def _give_back(self, pooled: _Pooled, cursor: aiopg.Cursor | None) -> None:
        raw = pooled.raw
        # Left inside a transaction or a statement (a cancelled ROLLBACK, a dropped connection): not reusable.
        if self._closed or raw.closed or raw.raw.get_transaction_status() != IDLE:
            self._discard(pooled)
        else:
            pooled.cursor = cursor
            pooled.idle_since = time.monotonic()
            self._free.append(pooled)
        self._gate.release()

    def _discard(self, pooled: _Pooled) -> None:
        self._size -= 1
        pooled.raw.close()  # aiopg's close is done on return (its future is already resolved)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetch_val("SELECT 1")

    async def close(self) -> None:
        """Close the free connections now; those checked out close as they come back."""
        self._closed = True
        while self._free:
            self._discard(self._free.pop())


class _Checkout:
    """``async with db.connection()``: a class, not a generator, as it runs around every statement."""

    __slots__ = ("_conn", "_database", "_pooled")

    def __init__(self, database: Database) -> None:
        self._database = database

    async def __aenter__(self) -> Connection:
        database = self._database
        pooled = self._pooled = await database._check_out()
        self._conn = Connection(
            pooled.raw, database._begin, server_prepared=database._server_prepared, cursor=pooled.cursor
        )
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        cursor = self._conn._cursor
        if cursor is not None and not cursor.closed and cursor.rowcount > KEPT_RESULT_ROWS:
            cursor.close()  # a cursor keeps its last result: a large one is not kept while the connection idles
        self._database._give_back(self._pooled, None if cursor is None or cursor.closed else cursor)


def is_unique_violation(err: IntegrityViolation, constraint: str | None = None) -> bool:
    ok = err.sqlstate == psycopg2.errorcodes.UNIQUE_VIOLATION
    return ok and (constraint is None or err.constraint == constraint)
