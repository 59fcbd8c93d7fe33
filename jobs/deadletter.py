"""Dead letters: tasks that failed for good, kept with their input and error for a human."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import desc, func, select, update
from sqlalchemy.dialects.postgresql import insert

from lms.db import Connection, Row
from lms.tables import job_dead_letters

MAX_ERROR_LENGTH = 10_000


def _plain(value: Any) -> Any:
    """Labels and arguments as JSON can hold them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


async def record(
    conn: Connection,
    *,
    task_id: str,
    task_name: str,
    queue: str,
    args: list[Any],
    kwargs: dict[str, Any],
    labels: dict[str, Any],
    reason: str,
    error: BaseException,
    attempts: int,
) -> bool:
    """Store the failure; False if this task was already dead-lettered (a redelivery)."""
    stmt = (
        insert(job_dead_letters)
        .values(
            task_id=task_id[:64],
            task_name=task_name[:200],
            queue=queue[:50],
            args=_plain(args),
            kwargs=_plain(kwargs),
            labels=_plain(labels),
            reason=reason,
            error_type=f"{type(error).__module__}.{type(error).__qualname__}"[:200],
            error=(str(error) or repr(error))[:MAX_ERROR_LENGTH],
            attempts=attempts,
        )
        .on_conflict_do_nothing(index_elements=[job_dead_letters.c.task_id])
        .returning(job_dead_letters.c.id)
    )
    return await conn.fetch_one(stmt) is not None


async def recent(conn: Connection, *, limit: int = 50) -> list[Row]:
    return await conn.fetch_all(select(job_dead_letters).order_by(desc(job_dead_letters.c.created_at)).limit(limit))


async def get_for_update(conn: Connection, letter_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(job_dead_letters).where(job_dead_letters.c.id == letter_id).with_for_update())


async def mark_requeued(conn: Connection, letter_id: uuid.UUID) -> None:
    await conn.execute(
        update(job_dead_letters).where(job_dead_letters.c.id == letter_id).values(requeued_at=func.now())
    )
