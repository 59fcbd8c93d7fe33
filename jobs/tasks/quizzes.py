"""Quiz tasks: closing timed attempts their students abandoned.

The work lives in :mod:`lms.quizzes.service` (the code the web app runs when
a late answer arrives); this task runs it on a schedule and announces each
result as a submit does (``quiz_attempt_submitted`` to the course's
dashboards, ``quiz_graded`` to the student, the result email). Idempotent: a
graded attempt is never graded again, and the email's message id is derived
from the attempt.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.quizzes.service import announce, close_abandoned_attempts

log = logging.getLogger(__name__)
tasks = TaskTable()


@tasks.task("close_abandoned_quiz_attempts", schedule="abandoned_attempts_cron", timeout_seconds=600)
async def close_abandoned_quiz_attempts(res: Resources = TaskiqDepends(resources)) -> int:
    """Grade, as they stood, open attempts past their deadline plus the grace; announce each result."""
    closed = await close_abandoned_attempts(
        res.db, datetime.now(UTC), grace_seconds=res.config.quizzes.submit_grace_seconds
    )
    await announce(res.effects, closed)
    return len(closed)
