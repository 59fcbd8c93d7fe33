"""Live-session tasks: ending and storing the sessions nobody runs any more.

The work lives in :mod:`realtime.live.abandoned` (it ends a session the way
its owner would); this task runs it on ``jobs.abandoned_live_sessions_cron``.
Idempotent: an ended session is not a candidate any more.
"""

from __future__ import annotations

import logging

from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from realtime.live.abandoned import end_abandoned_sessions

log = logging.getLogger(__name__)
tasks = TaskTable()


@tasks.task("end_abandoned_live_sessions", schedule="abandoned_live_sessions_cron", timeout_seconds=600)
async def end_abandoned_live_sessions(res: Resources = TaskiqDepends(resources)) -> int:
    """End (scoring what Redis recorded) and store open live sessions no instance runs any more."""
    ended = await end_abandoned_sessions(config=res.config, db=res.db, redis=res.redis)
    if ended:
        log.info("ended %d abandoned live session(s)", len(ended))
    return len(ended)
