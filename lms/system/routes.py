"""Liveness, readiness, metrics and the API's own description."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from lms import __version__
from lms.api.endpoint import endpoint
from lms.api.openapi import build_openapi
from lms.api.problems import Forbidden, NotFound, ServiceUnavailable
from lms.appkeys import CLIENT_IP, CONFIG, DB, METRICS, REDIS

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


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_SECONDS)
    except Exception as err:  # any failure means "not ready"; the reason is reported
        log.warning("readiness: %s failed: %s", name, err)
        return name, f"unavailable: {type(err).__name__}"
    return name, "ok"


@routes.get("/api/v1/ready")
@endpoint(
    summary="Readiness: PostgreSQL and Redis answer",
    description="503 names the dependency that failed.",
    response=Readiness,
    errors=[503],
    tags=["system"],
)
async def ready(request: web.Request) -> dict[str, Any]:
    app = request.app
    probes = {"postgres": app[DB].ping(), "redis": app[REDIS].ping()}
    probes.update({name: probe() for name, probe in app[READINESS_PROBES].items()})
    results = dict(await asyncio.gather(*(_check(n, p) for n, p in probes.items())))
    for name, state in results.items():
        app[METRICS].ready_failures.labels(name).set(1 if state == "ok" else 0)
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
    body = generate_latest(request.app[METRICS].registry)
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
