"""The seam between the domain and background work.

Use cases enqueue by task name after their transaction commits, through
their :class:`~lms.effects.Effects`::

    async with db.transaction() as conn:
        user = await create_user(conn, ...)
    await effects.enqueue("recalculate_course_progress", course_id=str(course_id))

The app factory provides the implementation (the Taskiq broker, see
``jobs/``), so ``lms`` never imports ``jobs`` at import time.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class JobQueue(Protocol):
    async def enqueue(self, task_name: str, /, **kwargs: Any) -> None:
        """Send a task to the workers. Call it only after the motivating commit."""


JOBS: web.AppKey[JobQueue] = web.AppKey("jobs")
