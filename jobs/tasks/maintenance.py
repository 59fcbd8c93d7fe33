"""Housekeeping on a schedule: expired and long-revoked refresh tokens.

Access-token revocations live in Redis with a TTL (``lms.auth.redis_state``)
and expire on their own; nothing to clean there.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.tables import refresh_tokens

log = logging.getLogger(__name__)
tasks = TaskTable()

BATCH = 1000


@tasks.task("cleanup_tokens", schedule="token_cleanup_cron", timeout_seconds=1800)
async def cleanup_tokens(res: Resources = TaskiqDepends(resources)) -> int:
    """Delete refresh tokens past expiry, and revoked ones kept past the retention.

    Revoked tokens stay for a while so that a stolen, rotated token presented
    again is recognised as reuse. Deleting in batches keeps each transaction
    (and its locks) short; running twice deletes nothing more.
    """
    retention = timedelta(days=res.config.jobs.revoked_token_retention_days)
    doomed = (
        select(refresh_tokens.c.id)
        .where(
            or_(
                refresh_tokens.c.expires_at < func.now(),
                refresh_tokens.c.revoked_at < func.now() - retention,
            )
        )
        .limit(BATCH)
        .scalar_subquery()
    )
    total = 0
    while True:
        async with res.db.transaction() as conn:
            deleted = await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.id.in_(doomed)))
        total += deleted
        if deleted < BATCH:
            break
    log.info("token cleanup deleted %d refresh token(s)", total)
    return total
