"""Health, readiness, metrics, the OpenAPI document and cross-cutting headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from lms.app import create_app
from lms.devservers import EmbeddedRedis
from tests.conftest import Servers, make_config
from tests.polling import eventually


async def test_health(client: Any) -> None:
    response = await client.get("/api/v1/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def eventually_ready(client: Any) -> bool:
    async def ready() -> bool:
        return (await client.get("/api/v1/ready")).status == 200

    return await eventually(ready, what="ready", interval=0.2)


async def test_ready_when_both_answer(client: Any) -> None:
    response = await client.get("/api/v1/ready")
    assert response.status == 200
    checks = (await response.json())["checks"]
    assert {"postgres", "redis", "socketio_fanout"} <= set(checks) and set(checks.values()) == {"ok"}


async def test_ready_is_503_while_redis_is_stopped_and_200_after(
    aiohttp_client: Any, servers: Servers, tmp_path: Path
) -> None:
    own_redis = EmbeddedRedis(tmp_path / "redis")
    own_redis.start()
    try:
        config = make_config(servers, redis={"url": own_redis.url, "socket_timeout_seconds": 0.5})
        client = await aiohttp_client(create_app(config))
        assert await eventually_ready(client)

        own_redis.stop()
        response = await client.get("/api/v1/ready")
        assert response.status == 503 and response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert body["failed"] == ["redis"] and "redis" in body["detail"]
        assert body["checks"]["postgres"] == "ok"

        own_redis.start()  # same port
        # Listeners resubscribe with a short backoff: ready within a bounded wait.
        assert await eventually_ready(client)  # after Redis came back
    finally:
        own_redis.stop()


async def test_ready_names_postgres_when_it_is_unreachable(aiohttp_client: Any, servers: Servers) -> None:
    config = make_config(
        servers, database={"pool_min": 0, "acquire_timeout_seconds": 0.5, "connect_timeout_seconds": 1}
    )
    app = create_app(config)
    client = await aiohttp_client(app)
    from lms.appkeys import DB

    await app[DB].close()  # a closed pool cannot hand out connections
    response = await client.get("/api/v1/ready")
    assert response.status == 503
    assert (await response.json(content_type=None))["failed"] == ["postgres"]


async def test_metrics_count_requests_by_route_and_status(client: Any) -> None:
    await client.get("/api/v1/health")
    await client.get("/api/v1/nope")
    text = await (await client.get("/metrics")).text()
    assert 'lms_http_requests_total{method="GET",route="/api/v1/health",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "lms_http_request_duration_seconds_bucket" in text
    assert 'lms_db_pool_connections{state="max"} 5.0' in text


async def test_metrics_count_unusual_methods_as_one_label(client: Any) -> None:
    # Methods the HTTP parser knows (it answers 400 to a made-up token before any middleware runs).
    for method in ("PROPFIND", "MKCOL", "PURGE"):
        assert (await client.request(method, "/api/v1/health")).status == 405
    await client.get("/api/v1/health")
    await client.get("/api/v1/health")
    text = await (await client.get("/metrics")).text()
    assert 'lms_http_requests_total{method="GET",route="/api/v1/health",status="200"} 2.0' in text
    counted = [line for line in text.splitlines() if line.startswith('lms_http_requests_total{method="other"')]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 3, counted
    assert not any(method in text for method in ("PROPFIND", "MKCOL", "PURGE"))


async def test_metrics_can_be_restricted_by_address(aiohttp_client: Any, servers: Servers) -> None:
    client = await aiohttp_client(create_app(make_config(servers, metrics={"allow_from": ["10.0.0.0/8"]})))
    assert (await client.get("/metrics")).status == 403


async def test_openapi_is_valid_3_1_and_lists_the_routes(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    assert {"/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json", "/metrics"} <= set(doc["paths"])
    assert doc["paths"]["/api/v1/ready"]["get"]["responses"]["503"]


async def test_docs_page_is_served_and_can_be_turned_off(client: Any, aiohttp_client: Any, servers: Servers) -> None:
    page = await client.get("/api/docs")
    assert page.status == 200 and "swagger-ui-bundle.js" in await page.text()
    assert (await client.get("/static/docs.js")).status == 200
    off = await aiohttp_client(create_app(make_config(servers, http={"docs_enabled": False})))
    assert (await off.get("/api/docs")).status == 404


async def test_security_headers_on_success_and_error(client: Any) -> None:
    for path in ("/api/v1/health", "/api/v1/nope"):
        headers = (await client.get(path)).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_cors_preflight_for_configured_origin_only(client: Any) -> None:
    allowed = await client.options(
        "/api/v1/health",
        headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://allowed.example"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    denied = await client.options(
        "/api/v1/health", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in denied.headers
    simple = await client.get("/api/v1/nope", headers={"Origin": "http://allowed.example"})
    assert simple.headers["Access-Control-Allow-Origin"] == "http://allowed.example"


async def test_untrusted_host_is_refused(aiohttp_client: Any, servers: Servers) -> None:
    client = await aiohttp_client(create_app(make_config(servers, http={"trusted_hosts": ["lms.example.com"]})))
    response = await client.get("/api/v1/health")
    assert response.status == 400 and response.content_type == "application/problem+json"
    ok = await client.get("/api/v1/health", headers={"Host": "lms.example.com"})
    assert ok.status == 200


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


async def test_openapi_references_resolve_and_every_api_route_is_described(client: Any, app: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for route in app.router.routes():
        resource = route.resource
        path = resource.canonical if resource is not None else ""
        if route.method in ("HEAD", "OPTIONS", "*") or not path.startswith("/api/v1/"):
            continue
        assert route.method.lower() in doc["paths"].get(path, {}), (
            f"{route.method} {path} is not in the OpenAPI document"
        )
