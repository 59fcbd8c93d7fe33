"""Namespaces, rooms, and the one table of where each domain event goes.

The web servers (``realtime.server``: the event bus, through the in-process
emit queue) and the workers (``realtime.emitter.Emitter``: straight to the
fan-out channel) both turn a domain event into Socket.IO emits with
:func:`deliveries`, so an event reaches the same rooms with the same
payload whichever process raised it. Rooms are named ``kind:id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lms.events import (
    CourseCompleted,
    CourseEvent,
    DomainEvent,
    EnrollmentCreated,
    LessonProgressChanged,
    Notification,
    QuizAttemptSubmitted,
)
from realtime.protocol import to_json

USERS_NAMESPACE = "/"
DASHBOARD_NAMESPACE = "/dashboard"


def user_room(user_id: object) -> str:
    """Every connection of a user on ``/`` (all their devices)."""
    return f"user:{user_id}"


def course_room(course_id: object) -> str:
    """The dashboards watching a course on ``/dashboard``."""
    return f"course:{course_id}"


@dataclass(frozen=True)
class Outgoing:
    """One Socket.IO emit: an event and its payload to a room of a namespace."""

    event: str
    data: dict[str, Any]
    room: str
    namespace: str


Route = Callable[[Any], Outgoing]


def to_dashboard(event: CourseEvent) -> Outgoing:
    """The event as it is, to the instructors watching its course."""
    return Outgoing(event.name, to_json(event), course_room(event.course_id), DASHBOARD_NAMESPACE)


def progress_to_devices(event: LessonProgressChanged) -> Outgoing:
    """``progress_updated``: the ``lesson_progress`` payload, so the student's other devices stay current."""
    return Outgoing("progress_updated", to_json(event), user_room(event.student_id), USERS_NAMESPACE)


def graded_to_devices(event: QuizAttemptSubmitted) -> Outgoing:
    """``notification`` ``quiz_graded`` to the student, whoever graded the attempt (a submit, the closer job)."""
    data = to_json(event)
    del data["student_id"]
    return notification(Notification(user_id=event.student_id, type="quiz_graded", data=data))


def notification(event: Notification) -> Outgoing:
    """``notification`` ``{type, data, created_at}`` to every device of the user."""
    payload = {"type": event.type, "data": to_json(event.data), "created_at": event.created_at.isoformat()}
    return Outgoing(event.name, payload, user_room(event.user_id), USERS_NAMESPACE)


# Event type -> what it becomes. Adding an event means adding it here; an
# event missing from the table is a programming error (KeyError), not a silent drop.
ROUTES: dict[type[DomainEvent], tuple[Route, ...]] = {
    EnrollmentCreated: (to_dashboard,),
    LessonProgressChanged: (to_dashboard, progress_to_devices),
    CourseCompleted: (to_dashboard,),
    QuizAttemptSubmitted: (to_dashboard, graded_to_devices),
    Notification: (notification,),
}


def deliveries(event: DomainEvent) -> list[Outgoing]:
    """Every emit one domain event makes, in order."""
    return [route(event) for route in ROUTES[type(event)]]
