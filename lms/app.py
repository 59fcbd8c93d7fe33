"""The application factory: no I/O at import time, everything from the settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from lms.analytics import routes as analytics
from lms.api import middlewares as mw
from lms.api.problems import error_middleware
from lms.api.ratelimit import rate_limit_middleware
from lms.appkeys import CONFIG, DB, METRICS, REDIS
from lms.auth import routes as auth
from lms.auth.principals import TOKENS, TokenCache, end_checks
from lms.certificates.routes import setup_certificates
from lms.clients import open_database, redis_client
from lms.config import Settings
from lms.courses import routes as courses
from lms.effects import EFFECTS, Effects
from lms.enrollments import routes as enrollments
from lms.events import EVENTS, EventBus
from lms.files import routes as files
from lms.jobqueue import JOBS
from lms.live import challenges
from lms.live import routes as live
from lms.metrics import Metrics
from lms.pages import setup_pages
from lms.payments import routes as payments
from lms.quizzes import routes as quizzes
from lms.quizzes import transfer_routes as quiz_transfer
from lms.storage import STORAGE, open_storage
from lms.system import routes as system
from lms.users import routes as users

log = logging.getLogger(__name__)


def create_app(config: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(
        # Upper bound for any body aiohttp reads: the upload limit. Every
        # other route reads at most http.max_body_bytes (mw.body_size_limit).
        client_max_size=max(config.http.max_body_bytes, config.uploads.max_upload_mb * 1024 * 1024),
        middlewares=setup_middlewares(config, metrics),
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app[TOKENS] = TokenCache(config.auth.principal_cache_seconds)
    app.on_shutdown.append(end_checks)
    app[system.READINESS_PROBES] = {}
    app[system.OPENAPI_CACHE] = {}
    app[EVENTS] = EventBus()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(storage_ctx)
    # The job queue (jobs/web.py) is imported here, not at the top: lms
    # does not depend on jobs at import time (see lms/jobqueue.py).
    from jobs.web import jobs_ctx

    app.cleanup_ctx.append(jobs_ctx)
    app.cleanup_ctx.append(effects_ctx)  # needs the job queue
    app.cleanup_ctx.append(payments.payments_ctx)  # needs the database and the effects
    setup_routes(app)
    system.setup_dependency_metrics(app)
    # Socket.IO and the live pages; imported here like jobs: lms does not
    # depend on realtime at import time.
    from realtime.server import setup_realtime

    setup_realtime(app, config)
    return app


def setup_middlewares(config: Settings, metrics: Metrics) -> list[Middleware]:
    # Outermost first. The request context wraps everything so that every
    # response, errors included, is logged, counted and carries its request
    # id. CORS and security headers sit outside the error renderer so that
    # problem responses get them too. The error renderer turns whatever the
    # inner layers raise (untrusted host, body too large, handler errors)
    # into problem+json. Rate limiting comes after the cheap refusals so a
    # flood of junk cannot spend other callers' budgets, and before any work.
    return [
        mw.request_context(metrics, config.http.trusted_proxies),
        mw.cors(config.http),
        mw.security_headers(config.http),
        error_middleware,
        mw.trusted_hosts(config.http),
        mw.body_size_limit(config.http.max_body_bytes, large_body_routes=("/api/v1/files/upload",)),
        rate_limit_middleware(config),
    ]


def setup_routes(app: web.Application) -> None:
    app.router.add_routes(system.routes)
    app.router.add_routes(auth.routes)
    app.router.add_routes(users.routes)
    app.router.add_routes(live.routes)
    app.router.add_routes(challenges.routes)
    app.router.add_routes(courses.routes)
    app.router.add_routes(enrollments.routes)
    app.router.add_routes(quizzes.routes)
    app.router.add_routes(quiz_transfer.routes)
    app.router.add_routes(payments.routes)
    app.router.add_routes(files.routes)
    setup_certificates(app)
    app.router.add_routes(analytics.routes)
    setup_pages(app)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = await open_database(app[CONFIG].database)
    app[DB] = db
    app[METRICS].add_gauges(
        "lms_db_pool_connections",
        "Database pool connections by state",
        lambda: [({"state": "used"}, db.size - db.free), ({"state": "idle"}, db.free), ({"state": "max"}, db.max_size)],
    )
    yield
    await db.close()


async def effects_ctx(app: web.Application) -> AsyncIterator[None]:
    """What the use cases of requests are given: this app's job queue and event bus (lms/effects.py)."""
    app[EFFECTS] = Effects(app[CONFIG], app[JOBS], app[EVENTS])
    yield


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = await open_storage(app[CONFIG].storage)
    app[STORAGE] = storage
    yield
    await storage.close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = redis_client(app[CONFIG].redis)
    app[REDIS] = client
    yield
    await client.aclose()
