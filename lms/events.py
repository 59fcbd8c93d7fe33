"""Domain events: raised in one place after the transaction commits.

The domain publishes what happened; the app factory decides who hears it
(the realtime layer pushes them to dashboards and devices). Payload fields
are those of LIVE_PROTOCOL.md so subscribers can forward ``asdict(event)``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainEvent:
    name: ClassVar[str]
    course_id: uuid.UUID


@dataclass(frozen=True)
class EnrollmentCreated(DomainEvent):
    name: ClassVar[str] = "enrollment_created"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID
    student_name: str
    status: str


@dataclass(frozen=True)
class LessonProgressChanged(DomainEvent):
    name: ClassVar[str] = "lesson_progress"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID
    lesson_id: uuid.UUID
    completion_percentage: Decimal
    progress_percentage: Decimal
    completed: bool


@dataclass(frozen=True)
class CourseCompleted(DomainEvent):
    name: ClassVar[str] = "course_completed"
    enrollment_id: uuid.UUID
    student_id: uuid.UUID


@dataclass(frozen=True)
class QuizAttemptSubmitted(DomainEvent):
    name: ClassVar[str] = "quiz_attempt_submitted"
    quiz_id: uuid.UUID
    attempt_id: uuid.UUID
    student_id: uuid.UUID
    percentage: Decimal
    is_passed: bool


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
