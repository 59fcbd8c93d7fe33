"""The system overview as a snapshot that every instance shares.

Summing the platform (every user, enrollment and payment of the window)
costs tens of milliseconds; an admin page polls it. So the overview is
computed from the tables, stored in Redis under its zone and days, and
served as stored until it is older than ``analytics.overview_max_age_seconds``.
Then one request (a Redis lock) recomputes it while the others keep serving
the previous snapshot. The response carries ``as_of``: every figure is exact
as of that instant, and the same whichever instance answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from pydantic import TypeAdapter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.analytics.platform import system_figures
from lms.analytics.schemas import SystemOverview
from lms.analytics.window import Window
from lms.db import Database

log = logging.getLogger(__name__)

ADAPTER = TypeAdapter(SystemOverview)
# A snapshot stays in Redis this many times its max age (served while one request recomputes it).
KEEP_FACTOR = 10
LOCK_SECONDS = 30
# A request that finds no snapshot while another computes it waits this long for it, then computes.
WAIT_SECONDS, WAIT_STEP = 5.0, 0.05


def snapshot_key(window: Window) -> str:
    return f"analytics:overview:{window.tz}:{window.first}:{window.last}"


async def compute(db: Database, window: Window, max_age: float) -> bytes:
    now = datetime.now(UTC)
    async with db.connection() as conn:
        figures = await system_figures(conn, window, now)
    return ADAPTER.dump_json(ADAPTER.validate_python(figures | {"as_of": now, "max_age_seconds": max_age}))


async def system_overview(db: Database, redis: Redis, window: Window, max_age: float) -> bytes:
    """The overview's JSON: the shared snapshot when fresh enough, else recomputed (and shared)."""
    if max_age <= 0:
        return await compute(db, window, max_age)
    key = snapshot_key(window)
    try:
        stored, taken = await redis.mget(key, key + ":as_of")
    except (RedisError, OSError) as err:
        log.warning("overview snapshot unavailable (%s); computing it for this request", err)
        return await compute(db, window, max_age)
    if stored is not None and taken is not None:
        if time.time() - float(taken) < max_age:
            return _bytes(stored)
        # Stale: one request recomputes it, the others serve it meanwhile.
        if not await _claim(redis, key):
            return _bytes(stored)
    elif not await _claim(redis, key):
        # None yet and another request computes it: wait for that one, briefly.
        for _ in range(int(WAIT_SECONDS / WAIT_STEP)):
            await asyncio.sleep(WAIT_STEP)
            try:
                found = await redis.get(key)
            except (RedisError, OSError):
                break
            if found is not None:
                return _bytes(found)
    started = time.time()
    body = await compute(db, window, max_age)
    keep = int(max_age * 1000 * KEEP_FACTOR)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(key, body, px=keep)
            pipe.set(key + ":as_of", repr(started), px=keep)
            pipe.delete(key + ":lock")
            await pipe.execute()
    except (RedisError, OSError) as err:
        log.warning("overview snapshot not stored: %s", err)
    return body


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def _claim(redis: Redis, key: str) -> bool:
    try:
        return bool(await redis.set(key + ":lock", b"1", nx=True, ex=LOCK_SECONDS))
    except (RedisError, OSError):
        return True
