"""Who is online, counted across every instance in Redis.

A student is online while at least one of their devices is connected to the
``/`` namespace on any instance. Two sorted sets per fact, scored by expiry
(Redis server time in ms, so instance clocks do not matter):

- ``{prefix}:presence:user:{user_id}``: that user's live connections;
- ``{prefix}:presence:course:{course_id}``: the course's online students.

Instances refresh the entries of their own connections every third of the
TTL. When an instance dies nobody refreshes its entries: they expire, and the
instances whose dashboards watch the course sweep them out and send the new
count (see :class:`PresenceTracker`). Each change is one Lua script: one
round trip, atomic against other instances.

Courses that some dashboard watches are kept in ``{prefix}:presence:watched``
(refreshed by the watchers' instances), so that a student's coming and going
is published only for courses someone looks at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.aio import raise_if_cancelling

log = logging.getLogger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: user set, course sets...; ARGV: connection id, user id, ttl ms.
# Returns the 1-based indexes of the courses where the user came online.
_CONNECT = (
    _NOW
    + """
local ttl = tonumber(ARGV[3])
local exp = now + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local grew = {}
for i = 2, #KEYS do
  local prev = redis.call('ZSCORE', KEYS[i], ARGV[2])
  redis.call('ZADD', KEYS[i], exp, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ttl * 2)
  if (not prev) or tonumber(prev) <= now then grew[#grew + 1] = i - 1 end
end
return grew
"""
)

# KEYS: user set, course sets...; ARGV: connection id, user id.
# Returns the indexes of the courses the user left (their last connection went).
_DISCONNECT = (
    _NOW
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return {} end
local shrank = {}
for i = 2, #KEYS do
  if redis.call('ZREM', KEYS[i], ARGV[2]) == 1 then shrank[#shrank + 1] = i - 1 end
end
return shrank
"""
)

# KEYS: watched set, course sets...; ARGV: course ids...
# Per course: online count, or -1 when no dashboard watches it.
_WATCHED_COUNTS = (
    _NOW
    + """
local out = {}
for i = 2, #KEYS do
  local w = redis.call('ZSCORE', KEYS[1], ARGV[i - 1])
  if w and tonumber(w) > now then
    out[i - 1] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
  else
    out[i - 1] = -1
  end
end
return out
"""
)

# KEYS: watched set, course sets...; ARGV: ttl ms, course ids...
# Marks the courses watched, drops expired students; per course: removed, count.
_SWEEP = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  local removed = redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  out[#out + 1] = removed
  out[#out + 1] = redis.call('ZCARD', KEYS[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return out
"""
)


@dataclass(frozen=True)
class PresenceEntry:
    user_id: str
    conn_id: str
    course_ids: tuple[str, ...]


class PresenceStore:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = int(ttl_seconds * 1000)
        self.watched_key = f"{prefix}:presence:watched"
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._watched_counts = redis.register_script(_WATCHED_COUNTS)
        self._sweep = redis.register_script(_SWEEP)

    def user_key(self, user_id: str) -> str:
        return f"{self.prefix}:presence:user:{user_id}"

    def course_key(self, course_id: str) -> str:
        return f"{self.prefix}:presence:course:{course_id}"

    def _keys(self, c: PresenceEntry) -> list[str]:
        return [self.user_key(c.user_id), *(self.course_key(cid) for cid in c.course_ids)]

    async def connect(self, c: PresenceEntry) -> list[str]:
        """Record (or refresh) a connection; the courses where the user just came online."""
        picked = await self._connect(keys=self._keys(c), args=[c.conn_id, c.user_id, self.ttl_ms])
        return [c.course_ids[int(i) - 1] for i in picked]

    async def refresh(self, connections: Sequence[PresenceEntry]) -> list[str]:
        """Refresh many connections in one round trip; courses where someone came (back) online."""
        if not connections:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for c in connections:
            await self._connect(keys=self._keys(c), args=[c.conn_id, c.user_id, self.ttl_ms], client=pipe)
        results = await pipe.execute()
        grew: set[str] = set()
        for c, picked in zip(connections, results, strict=True):
            grew.update(c.course_ids[int(i) - 1] for i in picked)
        return sorted(grew)

    async def disconnect(self, c: PresenceEntry) -> list[str]:
        """Forget a connection; the courses where the user is now offline."""
        picked = await self._disconnect(keys=self._keys(c), args=[c.conn_id, c.user_id])
        return [c.course_ids[int(i) - 1] for i in picked]

    async def watched_counts(self, course_ids: Sequence[str]) -> dict[str, int]:
        """Online counts of the courses a dashboard watches (others are left out)."""
        if not course_ids:
            return {}
        keys = [self.watched_key, *(self.course_key(cid) for cid in course_ids)]
        counts = await self._watched_counts(keys=keys, args=list(course_ids))
        return {cid: int(n) for cid, n in zip(course_ids, counts, strict=True) if int(n) >= 0}

    async def sweep(self, course_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Mark courses watched and drop expired students: course → (removed, online)."""
        if not course_ids:
            return {}
        keys = [self.watched_key, *(self.course_key(cid) for cid in course_ids)]
        flat = await self._sweep(keys=keys, args=[self.ttl_ms, *course_ids])
        return {cid: (int(flat[2 * i]), int(flat[2 * i + 1])) for i, cid in enumerate(course_ids)}


Emit = Callable[[str, int], None]


class PresenceTracker:
    """Keeps this instance's entries fresh, sweeps what dead instances left, coalesces events.

    ``local_connections`` and ``local_watched`` read the Socket.IO server's
    own state (sessions, rooms); ``emit`` sends a ``presence`` event.
    """

    def __init__(
        self,
        store: PresenceStore,
        *,
        ttl_seconds: float,
        debounce_seconds: float,
        local_connections: Callable[[], Awaitable[list[PresenceEntry]]],
        local_watched: Callable[[], Iterable[str]],
        emit: Emit,
    ) -> None:
        self.store = store
        self.interval = ttl_seconds / 3
        self.debounce = debounce_seconds
        self.local_connections = local_connections
        self.local_watched = local_watched
        self.emit = emit
        self._pending: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def changed(self, course_ids: Iterable[str]) -> None:
        """Counts of these courses changed: send one event per course after the debounce delay."""
        self._pending.update(course_ids)
        if self._pending and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.debounce, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        pending, self._pending = sorted(self._pending), set()
        task = asyncio.create_task(self._send(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, course_ids: list[str]) -> None:
        try:
            counts = await self.store.watched_counts(course_ids)
        except (RedisError, OSError) as err:
            log.warning("presence counts unavailable (%s)", err)
            return
        for course_id, count in counts.items():
            self.emit(course_id, count)

    async def run(self) -> None:
        """Refresh and sweep every third of the TTL, for as long as the app runs."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except (RedisError, OSError) as err:
                raise_if_cancelling(err)
                log.warning("presence refresh failed (%s); retrying in %.1f s", err, self.interval)
            except Exception:
                log.exception("presence refresh failed")

    async def tick(self) -> None:
        connections = await self.local_connections()
        self.changed(await self.store.refresh([c for c in connections if c.course_ids]))
        swept = await self.store.sweep(sorted(set(self.local_watched())))
        for course_id, (removed, online) in swept.items():
            if removed:
                self.emit(course_id, online)

    async def close(self) -> None:
        """Send what is pending (this instance's clients just left), then stop."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = sorted(self._pending), set()
        if pending:
            await self._send(pending)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
