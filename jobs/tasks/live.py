"""Live-session tasks: asking the serving instances to end the sessions nobody runs any more.

The sweep runs where the live actors live (``realtime.live.abandoned``, in
``lms serve``): this task, on ``jobs.abandoned_live_sessions_cron``, only
publishes the request on the live channel, and every instance that hears it
sweeps (the session's lease makes sure one ends it). With no ``lms serve``
running nothing is swept, and nothing needs to be: a later run, or an
instance's supervisor once one starts, takes the sessions over.
"""

from __future__ import annotations

import logging

from taskiq import TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.live.keys import SWEEP_ABANDONED

log = logging.getLogger(__name__)
tasks = TaskTable()


@tasks.task("end_abandoned_live_sessions", schedule="abandoned_live_sessions_cron", timeout_seconds=600)
async def end_abandoned_live_sessions(res: Resources = TaskiqDepends(resources)) -> int:
    """Ask the serving instances to end and store the open live sessions none of them runs any more.

    Returns how many instances heard it (on a Redis Cluster: those subscribed through the node it reached).
    """
    heard = int(await res.redis.publish(res.config.live.channel, SWEEP_ABANDONED))
    log.info("asked %d instance(s) to end abandoned live sessions", heard)
    return heard
