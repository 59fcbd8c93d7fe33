"""The send_email task. Use cases queue it through ``Effects.email`` (lms/effects.py)::

    await effects.email("welcome", to=email, full_name=name, user_id=user_id, **context)

``message_id`` is the idempotency key (unique in email_log): the enqueuing
side fills it when the caller did not, so a redelivered task sends once.
"""

from __future__ import annotations

import uuid
from typing import Any

from taskiq import Context, TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from jobs.retry import Attempt, current_attempt
from lms.mail.errors import MailUnavailable

tasks = TaskTable()


def with_message_id(kwargs: dict[str, Any]) -> dict[str, Any]:
    if not kwargs.get("message_id"):
        kwargs["message_id"] = uuid.uuid4().hex
    return kwargs


@tasks.task("send_email", queue="emails", retry_on=(MailUnavailable,), timeout_seconds=120, prepare=with_message_id)
async def send_email(
    template: str,
    to: str,
    context: dict[str, Any],
    user_id: str | None = None,
    message_id: str | None = None,
    res: Resources = TaskiqDepends(resources),
    attempt: Attempt = TaskiqDepends(current_attempt),
    task: Context = TaskiqDepends(),
) -> str:
    return await res.mailer.send(
        template=template,
        to=to,
        context=context,
        # Kicked without the queue's help: the task id is as stable across
        # retries and redeliveries as a message id needs to be.
        message_id=message_id or f"task-{task.message.task_id}",
        user_id=user_id,
        final_attempt=attempt.is_last,
    )
