"""Certificate PDFs: rendered in the worker's WeasyPrint pool, stored, emailed, announced.

On the slow queue, so a burst of completions cannot take the slots of
emails or quick tasks. The work is :func:`lms.certificates.service.issue`;
storage and SMTP outages are retried with backoff, and a rendering that
still fails on the last attempt marks the certificate ``failed`` (the
student or an admin may ask for it again).
"""

from __future__ import annotations

import uuid

from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from jobs.retry import Attempt, current_attempt
from lms.certificates import service
from lms.mail.errors import MailUnavailable
from lms.storage import StorageError

tasks = TaskTable()


@tasks.task(service.ISSUE_TASK, queue="slow", retry_on=(StorageError, MailUnavailable), timeout_seconds=300)
async def issue_certificate(
    certificate_id: str,
    res: Resources = TaskiqDepends(resources),
    attempt: Attempt = TaskiqDepends(current_attempt),
) -> str:
    issuer = service.Issuer(db=res.db, storage=res.storage, renderer=res.pdf, mailer=res.mailer, effects=res.effects)
    return await service.issue(issuer, uuid.UUID(certificate_id), final_attempt=attempt.is_last)
