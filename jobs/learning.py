"""Learning tasks: progress re-computation after lesson changes, certificate requests.

Both take ids, re-read what they need and are idempotent; the work itself
lives in :mod:`lms.enrollments.service` (the same code the web app runs).
"""

from __future__ import annotations

import uuid

from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.certificates import service as certificates
from lms.enrollments import service
from lms.events import DomainEvent
from realtime.context import DASHBOARD_NAMESPACE, course_room
from realtime.emitter import Emitter
from realtime.protocol import to_json

tasks = TaskTable()


class EmittedEvents:
    """Domain events raised in a worker, delivered where the web app's subscriber sends them.

    (``realtime.dashboard.forward_domain_events``: the course's dashboard
    room.) A course completed by this job then shows on instructors'
    dashboards like one completed through the API.
    """

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    async def publish(self, *events: DomainEvent) -> None:
        for event in events:
            await self.emitter.emit(
                event.name, to_json(event), room=course_room(event.course_id), namespace=DASHBOARD_NAMESPACE
            )


@tasks.task("recalculate_course_progress", timeout_seconds=600)
async def recalculate_course_progress(course_id: str, res: Resources = TaskiqDepends(resources)) -> int:
    """Every studying enrollment's counters and percentage from the course's published lessons.

    Enrollments that reach 100% this way (their last missing lesson was
    removed) complete: email and certificate request, once.
    """
    effects = service.Effects(config=res.config, jobs=res.jobs, events=EmittedEvents(res.emitter))
    return await service.recalculate_course_progress(res.db, effects, uuid.UUID(course_id))


@tasks.task("request_certificate")
async def request_certificate(enrollment_id: str, res: Resources = TaskiqDepends(resources)) -> bool:
    """Record a pending certificate for a completed enrollment and queue its rendering (``issue_certificate``)."""
    return await certificates.request_certificate(res.db, res.jobs, uuid.UUID(enrollment_id))
