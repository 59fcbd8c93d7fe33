"""Session leases renewed from a thread (realtime/live/leases.py), on the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from lms.config import RedisSettings
from realtime.live.leases import LeaseKeeper
from tests.conftest import Servers


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_stalled_loop_keeps_its_leases_and_a_dead_one_loses_them(
    servers: Servers, redis: aioredis.Redis
) -> None:
    lost: list[str] = []
    keeper = LeaseKeeper(
        redis_settings=RedisSettings(url=servers.redis_url),
        ttl_ms=600,
        interval_ms=150,
        on_lost=lost.append,
        stall_limit_seconds=2.5,
    )
    key = f"test:lease:{uuid.uuid4()}"
    await redis.set(key, "me", px=600)
    keeper.start(asyncio.get_running_loop())
    keeper.hold("s1", key, "me")
    try:
        # The loop blocked for longer than the lease's life (a long GC, a burst of joins): still ours.
        time.sleep(1.5)
        assert await redis.get(key) == b"me"
        assert keeper.renewals > 0 and lost == []
        # A loop that stops beating for longer than the stall limit (stuck for good) lets the lease expire.
        await eventually(lambda: _gone(redis, key))
        # Another instance's token: renewing fails and the actor is told.
        keeper.beat()
        await redis.set(key, "someone else", px=60_000)
        keeper.hold("s1", key, "me")
        beat = asyncio.create_task(_beating(keeper))
        await eventually(lambda: _true(lost == ["s1"]))
        beat.cancel()
        assert await redis.get(key) == b"someone else"
    finally:
        await asyncio.to_thread(keeper.stop)


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def _true(value: bool) -> bool:
    return value


async def _beating(keeper: LeaseKeeper) -> None:
    while True:
        keeper.beat()
        await asyncio.sleep(0.05)
