"""Emitting to Socket.IO clients from outside the web servers (Taskiq workers, scripts).

A write-only fan-out manager publishes on the channel every ``lms serve``
instance listens to; each instance delivers to its own clients, so a job
reaches a browser whichever instance it is connected to::

    emitter = Emitter.open(config)          # once, at worker start-up
    await emitter.notify_user(user_id, "certificate_ready", {"certificate_id": str(cid)})
    await emitter.close()                   # at worker shutdown

Emits are best effort, like every live update: when Redis is unavailable
the call logs, counts and returns False; it never raises. Nothing is queued
for clients that are offline: what they missed is in the REST API.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from lms.config import Settings
from realtime.context import USERS_NAMESPACE, user_room
from realtime.fanout import RedisFanout

log = logging.getLogger(__name__)

# The `notification` types LIVE_PROTOCOL.md names.
NOTIFICATION_TYPES = frozenset(
    {"enrollment_activated", "payment_completed", "payment_failed", "certificate_ready", "quiz_graded"}
)


class Emitter:
    def __init__(self, manager: RedisFanout) -> None:
        self.manager = manager

    @classmethod
    def open(cls, config: Settings) -> Emitter:
        """An emitter on the servers' channel (no connection is made until the first emit)."""
        manager = RedisFanout(config.redis, channel=config.realtime.channel, write_only=True)
        return cls(manager)

    async def emit(self, event: str, data: dict[str, Any], *, room: str, namespace: str = USERS_NAMESPACE) -> bool:
        """Emit ``event`` to a room on every instance; False when it could not be published."""
        failures = self.manager.publish_failures
        await self.manager.emit(event, data, namespace=namespace, room=room)
        return self.manager.publish_failures == failures

    async def notify_user(
        self, user_id: uuid.UUID | str, type: str, data: dict[str, Any], *, created_at: datetime | None = None
    ) -> bool:
        """``notification`` ``{type, data, created_at}`` to every device of the user."""
        if type not in NOTIFICATION_TYPES:
            raise ValueError(f"unknown notification type {type!r} (see LIVE_PROTOCOL.md)")
        payload = {"type": type, "data": data, "created_at": (created_at or datetime.now(UTC)).isoformat()}
        sent = await self.emit("notification", payload, room=user_room(user_id))
        if not sent:
            log.warning("notification %s for user %s not sent (Redis unavailable)", type, user_id)
        return sent

    async def close(self) -> None:
        await self.manager.stop()
