"""Domain events: what happened, published by the use cases after the commit (``Effects.publish``).

The domain says what happened; who hears it is wired at the edge: in the
web app the :class:`EventBus` (the realtime layer subscribes), in a worker
the Socket.IO emitter. Both send each event where ``realtime/rooms.py``'s
table says. Payload fields are those of the live protocol's events
(``realtime/README.md``), so an event is forwarded as it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol, get_args

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainEvent:
    name: ClassVar[str]


@dataclass(frozen=True)
class CourseEvent(DomainEvent):
    """Something that happened in a course: its instructors' dashboards hear of it."""

    course_id: uuid.UUID


@dataclass(frozen=True)
class EnrollmentCreated(CourseEvent):
    name: ClassVar[str] = "enrollment_created"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID
    student_name: str
    status: str


@dataclass(frozen=True)
class LessonProgressChanged(CourseEvent):
    name: ClassVar[str] = "lesson_progress"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID
    lesson_id: uuid.UUID
    completion_percentage: Decimal
    progress_percentage: Decimal
    completed: bool


@dataclass(frozen=True)
class CourseCompleted(CourseEvent):
    name: ClassVar[str] = "course_completed"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID


@dataclass(frozen=True)
class QuizAttemptSubmitted(CourseEvent):
    name: ClassVar[str] = "quiz_attempt_submitted"
    quiz_id: uuid.UUID
    attempt_id: uuid.UUID
    student_id: uuid.UUID
    percentage: Decimal
    is_passed: bool


NotificationType = Literal[
    "enrollment_activated", "payment_completed", "payment_failed", "certificate_ready", "quiz_graded"
]
NOTIFICATION_TYPES: tuple[str, ...] = get_args(NotificationType)


@dataclass(frozen=True)
class Notification(DomainEvent):
    """Something one user should hear of on every device (the protocol's ``notification``)."""

    name: ClassVar[str] = "notification"
    user_id: uuid.UUID | str
    type: str
    data: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.type not in NOTIFICATION_TYPES:
            raise ValueError(f"unknown notification type {self.type!r}; one of {', '.join(NOTIFICATION_TYPES)}")


class EventSink(Protocol):
    """Hears domain events: the web app's :class:`EventBus`, or a worker's ``realtime.emitter.Emitter``."""

    async def publish(self, *events: DomainEvent) -> None: ...


Subscriber = Callable[[DomainEvent], Awaitable[None]]


class EventBus:
    """In-process fan-out to subscribers; a failing subscriber never fails the request."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, *events: DomainEvent) -> None:
        for event in events:
            for subscriber in self._subscribers:
                try:
                    await subscriber(event)
                except Exception:  # the change is committed; delivery is best effort
                    log.exception("subscriber %r failed on %s", subscriber, event.name)


EVENTS = web.AppKey("events", EventBus)
