"""Cross-cutting HTTP concerns, each a middleware factory taking the settings.

The order they run in is decided in :func:`lms.app.setup_middlewares`.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from lms.api.problems import BadRequest, PayloadTooLarge
from lms.appkeys import CLIENT_IP, REQUEST_ID
from lms.config import HttpSettings
from lms.logs import bind_log_context, reset_log_context
from lms.metrics import Metrics

access_log = logging.getLogger("lms.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Any other token a client sends as a method is counted as "other": one label value per distinct
# token would let anyone grow the metrics without bound.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ALLOWED_REQUEST_ID = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def client_ip(
    peer: str, forwarded_for: str | None, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The first address, from the right, that is not one of our trusted proxies.

    X-Forwarded-For is believed only when the peer itself is a trusted proxy;
    otherwise anyone could pick the address their rate limit is counted on.
    """

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def request_context(metrics: Metrics, trusted_proxies: Sequence[str]) -> Middleware:
    """Request id, client address, structured access log and request metrics."""
    trusted = _networks(trusted_proxies)
    # The labelled metrics of each (method, route, status): prometheus_client's labels() validates
    # and locks on every call (the middleware's largest item in py-spy).
    series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        valid = 0 < len(incoming) <= 128 and set(incoming) <= _ALLOWED_REQUEST_ID
        # A correlation id, not a secret: the non-cryptographic generator (no system call per request).
        request_id = incoming if valid else f"{random.getrandbits(64):016x}"
        request[REQUEST_ID] = request_id
        request[CLIENT_IP] = client_ip(request.remote or "", request.headers.get("X-Forwarded-For"), trusted)
        # Every record logged while serving this request carries its id (and
        # the user id once a guard knows it: lms.auth.guards).
        context = bind_log_context(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as exc:  # 2xx/3xx raised as exceptions
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        finally:
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in METRIC_METHODS else "other"
            counted = series.get((method, route, status))
            if counted is None:
                counted = series[method, route, status] = (
                    metrics.http_requests.labels(method, route, str(status)),
                    metrics.http_latency.labels(method, route),
                )
            counted[0].inc()
            counted[1].observe(elapsed)
            if status >= 500:
                metrics.unhandled_errors.inc()
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "request_id": request_id,
                    "client_ip": request[CLIENT_IP],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "route": route,
                },
            )
            reset_log_context(context)

    return middleware


# Some middlewares below are plain functions that return the inner handler's awaitable (aiohttp
# awaits whatever a middleware returns) where they have nothing to do after it: an ``async def``
# waiting on the handler stays suspended as long as the handler runs, and a websocket's handler runs
# for the connection's life. Four such frames were 1.1 KB of every idle websocket's 26 (tracemalloc).


def is_websocket_upgrade(request: web.Request) -> bool:
    """A websocket handshake: its 101 goes out inside the handler, so no middleware can add headers after it."""
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def security_headers(http: HttpSettings) -> Middleware:
    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if is_websocket_upgrade(request):
            return handler(request)
        return with_headers(request, handler)

    async def with_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        # Pages set their own CSP (they load our scripts); JSON gets the strictest.
        headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        if http.hsts_enabled:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

    return middleware


def cors(http: HttpSettings) -> Middleware:
    """Answers preflights and marks responses for the configured origins only."""
    origins = set(http.cors_origins)
    allow_any = "*" in origins
    allow_headers = "Authorization, Content-Type, X-Request-ID, Idempotency-Key"
    allow_methods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

    def allowed(origin: str | None) -> bool:
        return origin is not None and (allow_any or origin in origins)

    def decorate(response: web.StreamResponse, origin: str) -> None:
        response.headers["Access-Control-Allow-Origin"] = (
            "*" if allow_any and not http.cors_allow_credentials else origin
        )
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Expose-Headers"] = (
            "X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Location"
        )
        if http.cors_allow_credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"

    def preflight(origin: str | None) -> web.Response:
        if not allowed(origin):
            # No CORS headers: the browser blocks the real request.
            return web.Response(status=204)
        assert origin is not None
        response = web.Response(status=204)
        decorate(response, origin)
        response.headers["Access-Control-Allow-Methods"] = allow_methods
        response.headers["Access-Control-Allow-Headers"] = allow_headers
        response.headers["Access-Control-Max-Age"] = str(http.cors_max_age_seconds)
        return response

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        origin = request.headers.get(hdrs.ORIGIN)
        if request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            return _ready(preflight(origin))
        if is_websocket_upgrade(request) or not allowed(origin):
            return handler(request)
        assert origin is not None
        return decorated(request, handler, origin)

    async def decorated(request: web.Request, handler: Handler, origin: str) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            decorate(exc, origin)  # type: ignore[arg-type]
            raise
        decorate(response, origin)  # type: ignore[arg-type]
        return response

    return middleware


def trusted_hosts(http: HttpSettings) -> Middleware:
    """Refuse requests for host names we do not serve (Host header attacks)."""
    hosts = {h.lower() for h in http.trusted_hosts}

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if hosts:
            host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
            if host not in hosts and not any(h.startswith("*.") and host.endswith(h[1:]) for h in hosts):
                raise BadRequest("This host name is not served here.", type_slug="untrusted-host")
        return handler(request)

    return middleware


def body_size_limit(max_bytes: int, large_body_routes: Sequence[str] = ()) -> Middleware:
    """Every body is bounded by ``max_bytes`` while it is read (413 past it).

    A declared oversize body is refused before any of it is read. Any other
    body, chunked or not, JSON or form, is read through a request whose
    ``client_max_size`` is ``max_bytes``: aiohttp stops reading once the
    body grows past it, so memory stays bounded whatever the client sends.
    Upload routes keep the application's larger limit (the upload size).
    """

    def too_large() -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {max_bytes} bytes.", max_bytes=max_bytes)

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if not request.body_exists or any(request.path.startswith(p) for p in large_body_routes):
            return handler(request)
        length = request.content_length
        if length is not None and length > max_bytes:
            raise too_large()
        # The clone shares the connection's payload; only the bound differs.
        # (It copies the request's state: what inner layers store stays inside.)
        return bounded(request.clone(client_max_size=max_bytes), handler)

    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as err:
            raise too_large() from err

    return middleware


async def _ready(response: web.StreamResponse) -> web.StreamResponse:
    """A response made without awaiting anything, as the awaitable a middleware returns."""
    return response
