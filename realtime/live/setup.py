"""Wiring live sessions into the app: the ``/live`` namespace and this instance's runtime.

Called by ``realtime.server.setup_realtime`` with its Socket.IO server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from lms.appkeys import DB, METRICS
from lms.clients import redis_client
from lms.config import Settings
from lms.metrics import Metrics
from realtime.live.guessing import PinGuesses
from realtime.live.namespace import LiveNamespace
from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)

LIVE = web.AppKey("live_runtime", LiveRuntime)
# The states a session's snapshot goes through (realtime/live/actor.py); "starting" before it loaded.
SESSION_STATES = ("starting", "lobby", "question", "reveal", "leaderboard", "ended", "other")
LIVE_NAMESPACE = web.AppKey("live_namespace", LiveNamespace)


def setup_live(app: web.Application, config: Settings, sio: socketio.AsyncServer) -> None:
    namespace = LiveNamespace(app, config)
    sio.register_namespace(namespace)
    app[LIVE_NAMESPACE] = namespace
    app.cleanup_ctx.append(live_ctx)


def add_live_gauges(metrics: Metrics, runtime: LiveRuntime) -> None:
    """Read from the actors this instance runs: summed over the instances, every open session counts once."""
    metrics.add_gauges(
        "lms_live_sessions_owned", "Live sessions whose actor runs on this instance",
        lambda: [({}, float(len(runtime.actors)))],
    )  # fmt: skip

    def by_state() -> list[tuple[dict[str, str], float]]:
        counts = dict.fromkeys(SESSION_STATES, 0)
        for actor in list(runtime.owned.values()):
            state = str(actor.snap.get("state", "starting"))
            counts[state if state in counts else "other"] = counts.get(state, 0) + 1
        return [({"state": state}, float(n)) for state, n in counts.items()]

    metrics.add_gauges("lms_live_sessions", "Live sessions this instance runs, by state", by_state)
    metrics.add_gauges(
        "lms_live_players_connected", "Players connected to the live sessions this instance runs",
        lambda: [({}, float(sum(len(a.connected) for a in list(runtime.owned.values()))))],
    )  # fmt: skip


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    namespace = app[LIVE_NAMESPACE]
    # A client of its own whose pool makes a burst of answers wait for connections (lms/clients.py).
    redis = redis_client(namespace.config.redis, max_connections=namespace.config.live.redis_max_connections)
    runtime = LiveRuntime(
        config=namespace.config,
        db=app[DB],
        redis=redis,
        deliver=namespace.deliver,
        local_players=namespace.local_players,
        metrics=namespace.metrics.live,
    )
    namespace.runtime = runtime
    namespace.pin_guesses = PinGuesses(redis, namespace.config.live)
    app[LIVE] = runtime
    add_live_gauges(app[METRICS], runtime)
    await runtime.start()
    log.info("live sessions: instance %s ready", runtime.instance_id)
    yield
    await runtime.stop()
    await redis.aclose()
