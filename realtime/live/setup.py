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
from realtime.context import Realtime
from realtime.live.guessing import PinGuesses
from realtime.live.machine import State
from realtime.live.namespace import LiveNamespace
from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)

LIVE = web.AppKey("live_runtime", LiveRuntime)
# The states a session goes through (realtime/live/machine.py); "starting" before its actor loaded it.
SESSION_STATES = ("starting", *(state.value for state in State), "other")
LIVE_NAMESPACE = web.AppKey("live_namespace", LiveNamespace)


def setup_live(rt: Realtime, config: Settings, sio: socketio.AsyncServer) -> None:
    app = rt.app
    namespace = LiveNamespace(rt, config)
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
            state = actor.snap.state.value if actor.snap is not None else "starting"
            counts[state if state in counts else "other"] = counts.get(state, 0) + 1
        return [({"state": state}, float(n)) for state, n in counts.items()]

    metrics.add_gauges("lms_live_sessions", "Live sessions this instance runs, by state", by_state)
    metrics.add_gauges(
        "lms_live_players_connected", "Players connected to the live sessions this instance runs",
        lambda: [({}, float(sum(len(a.snap.connected) for a in list(runtime.owned.values()) if a.snap)))],
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
        metrics=namespace.rt.metrics.live,
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
