"""Renewing this instance's session leases from a thread of its own.

A lease renewed by a task on the event loop expires whenever the loop is
late by more than ``lease_ttl_ms - lease_renew_interval_ms``: a long garbage
collection, a burst of thousands of joins, or a machine whose cores are
shared. Another instance then takes over an owner that is alive, and the
session pauses for nothing. Here one thread renews every lease of the
instance in one pipeline each ``lease_renew_interval_ms``, whatever the loop
is doing (the GIL lets it run every few milliseconds).

A thread must not keep a dead owner alive, though: the loop beats
(:meth:`LeaseKeeper.beat`, from a task) and when it has not beaten for
``stall_limit_seconds`` the thread stops renewing, so the leases expire and
another instance takes over. A SIGKILLed process takes its thread with it:
failover time is unchanged. Correctness never depends on the lease being
exact either: every write of an owner is fenced by its token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

from lms.clients import blocking_redis_client
from lms.config import RedisSettings
from realtime.live import lua

log = logging.getLogger(__name__)

STALL_LIMIT_SECONDS = 10.0


class LeaseKeeper:
    def __init__(
        self,
        *,
        redis_settings: RedisSettings,
        ttl_ms: int,
        interval_ms: int,
        on_lost: Callable[[str], None],
        stall_limit_seconds: float = STALL_LIMIT_SECONDS,
    ) -> None:
        self.redis_settings = redis_settings
        self.ttl_ms = ttl_ms
        self.interval = interval_ms / 1000
        self.on_lost = on_lost
        self.stall_limit = stall_limit_seconds
        self.renewals = 0
        self._leases: dict[str, tuple[str, str, float]] = {}  # session id -> (key, token, last renewed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="live-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def beat(self) -> None:
        """The event loop is alive (called from a task on it)."""
        self._beat = time.monotonic()

    def hold(self, session_id: str, key: str, token: str) -> None:
        with self._lock:
            self._leases[session_id] = (key, token, time.monotonic())

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._leases.pop(session_id, None)

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        client = blocking_redis_client(self.redis_settings, timeout=self.interval * 2)
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._renew_all(client)
                except Exception:  # the thread must outlive anything it renews
                    log.exception("live leases: renewing failed")
        finally:
            client.close()

    def _renew_all(self, client: redis.Redis) -> None:
        stalled = time.monotonic() - self._beat
        if stalled > self.stall_limit:
            log.error("live leases: the event loop has not run for %.1f s; letting the leases expire", stalled)
            return
        with self._lock:
            held = list(self._leases.items())
        if not held:
            return
        try:
            if isinstance(client, redis.RedisCluster):  # a cluster pipeline runs no scripts: one call each
                results = [client.eval(lua.RENEW, 1, key, token, self.ttl_ms) for _, (key, token, _) in held]
            else:
                pipe = client.pipeline(transaction=False)
                for _, (key, token, _) in held:
                    # EVAL, not EVALSHA: no script cache to miss on a restarted master.
                    pipe.eval(lua.RENEW, 1, key, token, self.ttl_ms)
                results = pipe.execute()
        except RedisError as err:
            now = time.monotonic()
            for session_id, (_, _, renewed) in held:
                if now - renewed >= self.ttl_ms / 1000 - self.interval:
                    log.error("live session %s: lease could not be renewed in time (%s); stopping", session_id, err)
                    self._lost(session_id)
            log.warning("live leases: renewal failed (%s); retrying", err)
            return
        now = time.monotonic()
        for (session_id, (key, token, _)), renewed in zip(held, results, strict=True):
            if renewed:
                self.renewals += 1
                with self._lock:
                    if session_id in self._leases:
                        self._leases[session_id] = (key, token, now)
            else:
                log.warning("live session %s: lease taken by another instance", session_id)
                self._lost(session_id)

    def _lost(self, session_id: str) -> None:
        self.drop(session_id)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_lost, session_id)
