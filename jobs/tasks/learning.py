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

tasks = TaskTable()


@tasks.task("recalculate_course_progress", timeout_seconds=600)
async def recalculate_course_progress(course_id: str, res: Resources = TaskiqDepends(resources)) -> int:
    """Every studying enrollment's counters and percentage from the course's published lessons.

    Enrollments that reach 100% this way (their last missing lesson was
    removed) complete: email and certificate request, once.
    """
    return await service.recalculate_course_progress(res.db, res.effects, uuid.UUID(course_id))


@tasks.task("request_certificate")
async def request_certificate(enrollment_id: str, res: Resources = TaskiqDepends(resources)) -> bool:
    """Record a pending certificate for a completed enrollment and queue its rendering (``issue_certificate``)."""
    return await certificates.request_certificate(res.db, res.effects, uuid.UUID(enrollment_id))
