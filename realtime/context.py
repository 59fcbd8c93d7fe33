"""What the namespaces share: the server, settings, metrics, presence and the emit queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

from lms.config import RealtimeSettings
from realtime.fanout import RedisFanout
from realtime.metrics import RealtimeMetrics
from realtime.presence import PresenceStore, PresenceTracker
from realtime.rooms import DASHBOARD_NAMESPACE, Outgoing, course_room

log = logging.getLogger(__name__)


class EmitQueue:
    """Server-initiated emits, sent in order by one task, off the request path.

    A REST handler publishing a domain event returns without waiting for
    fan-out or Redis; events keep their order (enrollment before progress).
    What has queued up meanwhile goes out together: one Redis round trip
    per batch (:meth:`RedisFanout.emit_many`). When the queue is full (Redis
    down for long, a flood) events are dropped and counted: live updates are
    best effort, the database has the truth.
    """

    BATCH = 256

    def __init__(self, fanout: RedisFanout, metrics: RealtimeMetrics, size: int) -> None:
        self.fanout = fanout
        self.metrics = metrics
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=size)
        self._dropped_logged_at = 0.0

    def put(self, out: Outgoing) -> None:
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            self.metrics.emit_failures.labels("queue_full").inc()
            now = time.monotonic()
            if now - self._dropped_logged_at > 5:
                self._dropped_logged_at = now
                log.warning("realtime emit queue full (%d); dropping %s to %s", self.queue.maxsize, out.event, out.room)

    async def emit(self, batch: list[Outgoing]) -> None:
        started = time.perf_counter()
        try:
            await self.fanout.emit_many(batch)
        except Exception:  # a failed emit must not stop the ones after it
            self.metrics.emit_failures.labels("error").inc(len(batch))
            log.exception("emit of %d events (%s to %s first) failed", len(batch), batch[0].event, batch[0].room)
            return
        elapsed = (time.perf_counter() - started) / len(batch)
        for out in batch:
            self.metrics.emit_seconds.labels(out.namespace).observe(elapsed)
            self.metrics.events_out.labels(out.namespace, out.event).inc()

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self.emit(batch)
            for _ in batch:
                self.queue.task_done()

    async def drain(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), within)


@dataclass
class Realtime:
    """One per application; reachable from the app under ``REALTIME``."""

    app: web.Application
    config: RealtimeSettings
    sio: socketio.AsyncServer
    fanout: RedisFanout
    metrics: RealtimeMetrics
    emits: EmitQueue
    presence: PresenceTracker | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A fire-and-forget task that is kept alive and whose failure is logged."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("realtime task failed", exc_info=task.exception())

    @property
    def store(self) -> PresenceStore:
        assert self.presence is not None, "presence starts with the app"
        return self.presence.store

    def presence_changed(self, course_ids: list[str]) -> None:
        if self.presence is not None and course_ids:
            self.presence.changed(course_ids)

    def send_presence(self, course_id: str, online: int) -> None:
        data = {"course_id": course_id, "online_students": online}
        self.emits.put(Outgoing("presence", data, course_room(course_id), DASHBOARD_NAMESPACE))


REALTIME = web.AppKey("realtime", Realtime)
