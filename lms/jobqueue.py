"""The seam between the domain and background work.

Domain code enqueues by task name after its transaction commits::

    async with db.transaction() as conn:
        user = await create_user(conn, ...)
    await request.app[JOBS].enqueue("send_email", template="welcome", to=user["email"], ...)

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
