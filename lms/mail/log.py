"""The email log: one row per message id, the idempotency key of the send_email job."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert

from lms.db import Connection
from lms.tables import email_log, users

MAX_ERROR_LENGTH = 2000


def _user_ref(user_id: uuid.UUID | None) -> object:
    # The user may have been deleted since the email was queued: the log row
    # keeps the message and drops the reference instead of failing.
    if user_id is None:
        return None
    return select(users.c.id).where(users.c.id == user_id).scalar_subquery()


def _attempt(
    *, message_id: str, user_id: uuid.UUID | None, to: str, template: str, subject: str, status: str, error: str | None
) -> Insert:
    """One attempt at a message: a new row, or the next attempt on the row of a message not yet sent."""
    values: dict[str, object] = {"status": status, "subject": subject[:300]}
    if error is not None:  # a claim keeps the last attempt's error until this one ends
        values["error"] = error[:MAX_ERROR_LENGTH]
    return (
        insert(email_log)
        .values(
            message_id=message_id,
            user_id=_user_ref(user_id),
            to_address=to[:255],
            template=template[:50],
            attempts=1,
            **values,
        )
        .on_conflict_do_update(
            index_elements=[email_log.c.message_id],
            set_={"attempts": email_log.c.attempts + 1, **values},
            where=email_log.c.status != "sent",
        )
    )


async def claim(
    conn: Connection, *, message_id: str, user_id: uuid.UUID | None, to: str, template: str, subject: str
) -> bool:
    """Record an attempt. False when the message was already sent (a redelivered task)."""
    stmt = _attempt(
        message_id=message_id, user_id=user_id, to=to, template=template, subject=subject, status="queued", error=None
    )
    return await conn.fetch_one(stmt.returning(email_log.c.id)) is not None


async def record_failure(
    conn: Connection, *, message_id: str, user_id: uuid.UUID | None, to: str, template: str, subject: str, error: str
) -> None:
    """A message that cannot be built (unknown template, missing context, bad address)."""
    await conn.execute(
        _attempt(
            message_id=message_id,
            user_id=user_id,
            to=to,
            template=template,
            subject=subject,
            status="failed",
            error=error,
        )
    )


async def mark_sent(conn: Connection, *, message_id: str) -> None:
    await conn.execute(
        update(email_log)
        .where(email_log.c.message_id == message_id)
        .values(status="sent", sent_at=func.now(), error=None)
    )


async def mark_error(conn: Connection, *, message_id: str, error: str, final: bool) -> None:
    """An attempt failed; the row stays queued while a retry is due, failed after the last."""
    await conn.execute(
        update(email_log)
        .where(email_log.c.message_id == message_id, email_log.c.status != "sent")
        .values(status="failed" if final else "queued", error=error[:MAX_ERROR_LENGTH])
    )
