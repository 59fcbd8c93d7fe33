"""Emitting to Socket.IO clients from outside the web servers (Taskiq workers, scripts).

A write-only fan-out manager publishes on the channel every ``lms serve``
instance listens to; each instance delivers to its own clients, so a job
reaches a browser whichever instance it is connected to::

    emitter = Emitter.open(config)          # once, at worker start-up
    await emitter.publish(CourseCompleted(...))   # where realtime/rooms.py sends it
    await emitter.notify_user(user_id, "certificate_ready", {"certificate_id": str(cid)})
    await emitter.close()                   # at worker shutdown

An emitter is a worker's event sink (:class:`lms.events.EventSink`): use
cases given a worker's ``Effects`` publish through it, and the events go to
exactly the rooms the web app's event bus sends them to.

Emits are best effort, like every live update: when Redis is unavailable
the call logs, counts and returns False; it never raises. Nothing is queued
for clients that are offline: what they missed is in the REST API.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from lms.config import Settings
from lms.events import DomainEvent, Notification
from realtime.fanout import RedisFanout
from realtime.rooms import USERS_NAMESPACE, deliveries

log = logging.getLogger(__name__)


class Emitter:
    def __init__(self, manager: RedisFanout) -> None:
        self.manager = manager

    @classmethod
    def open(cls, config: Settings) -> Emitter:
        """An emitter on the servers' channel (no connection is made until the first emit)."""
        manager = RedisFanout(
            config.redis.url,
            channel=config.realtime.channel,
            write_only=True,
            socket_timeout=config.redis.socket_timeout_seconds,
        )
        return cls(manager)

    async def emit(self, event: str, data: dict[str, Any], *, room: str, namespace: str = USERS_NAMESPACE) -> bool:
        """Emit ``event`` to a room on every instance; False when it could not be published."""
        failures = self.manager.publish_failures
        await self.manager.emit(event, data, namespace=namespace, room=room)
        return self.manager.publish_failures == failures

    async def publish(self, *events: DomainEvent) -> None:
        """Each domain event to where the web app would send it (:func:`realtime.rooms.deliveries`)."""
        for event in events:
            await self.send(event)

    async def send(self, event: DomainEvent) -> bool:
        """One domain event; False when some emit of it could not be published (logged)."""
        sent = True
        for out in deliveries(event):
            if not await self.emit(out.event, out.data, room=out.room, namespace=out.namespace):
                log.warning("%s to %s not sent (Redis unavailable)", out.event, out.room)
                sent = False
        return sent

    async def notify_user(self, user_id: uuid.UUID | str, type: str, data: dict[str, Any]) -> bool:
        """``notification`` ``{type, data, created_at}`` to every device of the user; ValueError for an unknown type."""
        return await self.send(Notification(user_id=user_id, type=type, data=data))

    async def close(self) -> None:
        await self.manager.stop()
