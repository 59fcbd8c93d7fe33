"""The side effects of a use case, after its commit: the one interface every use case is given.

A web handler and a worker task that run the same use case give it an
:class:`Effects`; only what hears the events differs (the web app's event
bus, a worker's Socket.IO emitter), and both deliver each event to the same
rooms (``realtime/rooms.py``). So a course completed by a request and one
completed by a job look the same to every dashboard and device.

Effects happen after the transaction that motivates them commits. Emails
and tasks are queued (the job queue); events are best effort (a failed
emit is logged, never raised into the use case).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lms.config import Settings
from lms.events import DomainEvent, EventSink, Notification
from lms.jobqueue import JobQueue


@dataclass(frozen=True)
class Effects:
    config: Settings
    jobs: JobQueue
    events: EventSink

    def link(self, path: str) -> str:
        """An absolute link for emails (``/courses/{slug}``, ``/attempts/{id}``) on the public base URL."""
        return f"{self.config.http.public_base_url.rstrip('/')}{path}"

    async def enqueue(self, task_name: str, /, **kwargs: Any) -> None:
        await self.jobs.enqueue(task_name, **kwargs)

    async def email(
        self,
        template: str,
        *,
        to: str,
        full_name: str,
        user_id: uuid.UUID | str,
        message_id: str | None = None,
        **context: Any,
    ) -> None:
        """Queue an email. ``message_id`` (the email log's idempotency key) makes a repeat a no-op."""
        await self.jobs.enqueue(
            "send_email",
            template=template,
            to=to,
            context={"full_name": full_name, **context},
            user_id=str(user_id),
            message_id=message_id or f"<{uuid.uuid4().hex}@lms>",
        )

    async def publish(self, *events: DomainEvent) -> None:
        await self.events.publish(*events)

    async def notify(self, user_id: uuid.UUID | str, type: str, data: dict[str, Any]) -> None:
        """``notification`` ``{type, data, created_at}`` to every device of the user."""
        await self.publish(Notification(user_id=user_id, type=type, data=data))


# The web app's (set at start-up, once the job queue is open).
EFFECTS = web.AppKey("effects", Effects)
