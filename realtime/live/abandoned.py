"""Ending sessions nobody runs any more, on the serving instances.

A session is abandoned when it is still open in PostgreSQL, was opened (or
started) longer ago than ``live.abandoned_after_minutes``, no instance holds
its lease, and its snapshot saw no activity for that long (or is gone from
Redis). The sweep takes the lease and ends the session the way its owner
would: scores what Redis recorded, stores the results, tells any client
still listening. Running it twice (or on two instances at once: the lease
decides) ends nothing twice.

The scheduled ``end_abandoned_live_sessions`` task (``jobs/tasks/live.py``) only
asks for a sweep on the live channel (:data:`lms.live.keys.SWEEP_ABANDONED`):
the actor and its runtime stay in ``lms serve``, the worker imports none of
them (jobs use only the write-only side of ``realtime/``; tests/test_imports.py holds it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lms.live import queries
from realtime.live.actor import SessionActor

if TYPE_CHECKING:
    from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)


async def end_abandoned_sessions(runtime: LiveRuntime) -> list[str]:
    """End and store every abandoned session; returns their ids."""
    config, db, redis, store = runtime.config, runtime.db, runtime.redis, runtime.store
    quiet_ms = config.live.abandoned_after_minutes * 60_000
    async with db.connection() as conn:
        candidates = await queries.list_stale_open_sessions(
            conn, older_than_minutes=config.live.abandoned_after_minutes
        )
    ended = []
    for row in candidates:
        session_id = str(row["id"])
        keys = store.keys(session_id)
        if await redis.exists(keys.lease):
            continue  # an instance runs it
        state = await store.load(keys)
        if state.snap is not None:
            now = await store.now_ms(keys)
            if now - int(state.snap.get("last_activity") or 0) < quiet_ms:
                continue  # recently active: a supervisor will take it over
        token = runtime.lease_token(session_id)
        if not await store.acquire(keys, token):
            continue
        actor = SessionActor(runtime, session_id, token)
        try:
            if await actor.end_abandoned():
                ended.append(session_id)
                log.info("abandoned live session %s ended and stored", session_id)
        finally:
            await store.release(keys, token)
    return ended
