"""Liveness, readiness, metrics and the API's own description."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from lms import __version__
from lms.api.endpoint import endpoint
from lms.api.openapi import build_openapi
from lms.api.problems import Forbidden, NotFound, ServiceUnavailable
from lms.appkeys import CLIENT_IP, CONFIG, DB, METRICS, REDIS
from lms.metrics import Metrics

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

READY_TIMEOUT_SECONDS = 2.0
OPENAPI_CACHE = web.AppKey("openapi_cache", dict)
# Later features register extra readiness checks (the Socket.IO Redis listener).
READINESS_PROBES = web.AppKey("readiness_probes", dict)


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]


@routes.get("/api/v1/health")
@endpoint(summary="Liveness: the process answers", response=Health, tags=["system"])
async def health(request: web.Request) -> dict[str, str]:
    return {"status": "ok"}


async def _check(metrics: Metrics, name: str, probe: Any) -> tuple[str, str]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_SECONDS)
    except Exception as err:  # any failure means "not ready"; the reason is reported
        log.warning("readiness: %s failed: %s", name, err)
        metrics.ready_failures.labels(name).set(0)
        return name, f"unavailable: {type(err).__name__}"
    metrics.ready_failures.labels(name).set(1)
    metrics.dependency_latency.labels(name).set(time.perf_counter() - started)
    return name, "ok"


async def check_dependencies(app: web.Application) -> dict[str, str]:
    """Ask every dependency at once; ``lms_dependency_up`` and its latency follow the answers."""
    probes = {"postgres": app[DB].ping(), "redis": app[REDIS].ping()}
    probes.update({name: probe() for name, probe in app[READINESS_PROBES].items()})
    return dict(await asyncio.gather(*(_check(app[METRICS], n, p) for n, p in probes.items())))


def setup_dependency_metrics(app: web.Application) -> None:
    """The readiness checks run before each scrape too, so the dependency gauges are fresh without a /ready call."""

    async def refresh() -> None:
        await check_dependencies(app)

    app[METRICS].on_scrape(refresh)


@routes.get("/api/v1/ready")
@endpoint(
    summary="Readiness: PostgreSQL and Redis answer",
    description="503 names the dependency that failed.",
    response=Readiness,
    errors=[503],
    tags=["system"],
)
async def ready(request: web.Request) -> dict[str, Any]:
    results = await check_dependencies(request.app)
    failed = sorted(n for n, s in results.items() if s != "ok")
    if failed:
        raise ServiceUnavailable(f"Not ready: {', '.join(failed)} unavailable.", checks=results, failed=failed)
    return {"status": "ok", "checks": results}


@routes.get("/metrics")
@endpoint(summary="Prometheus metrics", tags=["system"], response=str, response_content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    config = request.app[CONFIG].metrics
    if not config.enabled:
        raise NotFound("Metrics are disabled.")
    if config.allow_from:
        ip = ipaddress.ip_address(request[CLIENT_IP] or "0.0.0.0")  # noqa: S104 - an address to test, not to bind
        if not any(ip in ipaddress.ip_network(n, strict=False) for n in config.allow_from):
            raise Forbidden("Metrics are not served to this address.")
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/v1/openapi.json")
@endpoint(summary="This API's OpenAPI 3.1 document", tags=["system"], response=dict[str, Any])
async def openapi(request: web.Request) -> web.Response:
    app = request.app
    cache = app[OPENAPI_CACHE]
    if not cache:
        # Built once: the route table is frozen after start-up.
        config = app[CONFIG]
        cache.update(build_openapi(app, title=f"{config.app_name} API", version=__version__))
    return web.json_response(cache)
