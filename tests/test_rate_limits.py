"""Rate limits shared through Redis: tripping, headers, recovery."""

from __future__ import annotations

import asyncio
from typing import Any

from lms.app import create_app
from tests.builders import make_user
from tests.conftest import Servers, make_config

RULES = [
    {"name": "login-ip", "path_prefix": "/api/v1/auth/login", "limit": 4, "period_seconds": 1, "key": "ip"},
    {"name": "login-account", "path_prefix": "/api/v1/auth/login", "limit": 2, "period_seconds": 1, "key": "account"},
]


async def limited_client(aiohttp_client: Any, servers: Servers, **rate_limit: Any) -> Any:
    settings = {"enabled": True, "rules": RULES, "default_per_minute": 1000} | rate_limit
    return await aiohttp_client(create_app(make_config(servers, rate_limit=settings)))


async def test_login_limit_per_account_trips_and_recovers(aiohttp_client: Any, servers: Servers, db: Any) -> None:
    client = await limited_client(aiohttp_client, servers)
    user = await make_user(db)
    attempt = {"email": user["email"], "password": "wrong-password-guess"}
    statuses = [(await client.post("/api/v1/auth/login", json=attempt)).status for _ in range(2)]
    assert statuses == [401, 401]
    limited = await client.post("/api/v1/auth/login", json=attempt)
    assert limited.status == 429 and limited.content_type == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1 and limited.headers["RateLimit-Remaining"] == "0"
    # Another account from the same address is limited by the per-IP rule only.
    other = await client.post("/api/v1/auth/login", json={"email": "someone@example.com", "password": "guess-guess"})
    assert other.status == 401
    await asyncio.sleep(1.1)
    assert (await client.post("/api/v1/auth/login", json=attempt)).status == 401


async def test_login_limit_per_ip_is_shared_by_instances(aiohttp_client: Any, servers: Servers) -> None:
    a = await limited_client(aiohttp_client, servers)
    b = await limited_client(aiohttp_client, servers)
    for i, client in enumerate((a, b, a, b)):
        response = await client.post(
            "/api/v1/auth/login", json={"email": f"x{i}@example.com", "password": "guess-guess"}
        )
        assert response.status == 401
    assert (await b.post("/api/v1/auth/login", json={"email": "y@example.com", "password": "guess"})).status == 429


async def test_responses_carry_ratelimit_headers(aiohttp_client: Any, servers: Servers) -> None:
    client = await limited_client(aiohttp_client, servers, default_per_minute=5)
    response = await client.get("/api/v1/ready")  # exempt: no headers
    assert "RateLimit-Limit" not in response.headers
    response = await client.get("/api/v1/auth/me")
    assert response.headers["RateLimit-Limit"] == "5" and response.headers["RateLimit-Remaining"] == "4"
    for _ in range(4):
        await client.get("/api/v1/auth/me")
    assert (await client.get("/api/v1/auth/me")).status == 429


async def test_forwarded_for_is_honoured_only_from_trusted_proxies(aiohttp_client: Any, servers: Servers) -> None:
    rules = [
        {
            "name": "forgot-ip",
            "path_prefix": "/api/v1/auth/forgot-password",
            "limit": 1,
            "period_seconds": 60,
            "key": "ip",
        }
    ]
    untrusted = await limited_client(aiohttp_client, servers, rules=rules)
    body = {"email": "nobody@example.com"}
    await untrusted.post("/api/v1/auth/forgot-password", json=body, headers={"X-Forwarded-For": "198.51.100.1"})
    # Spoofing a new address does not buy a new budget.
    spoofed = await untrusted.post(
        "/api/v1/auth/forgot-password", json=body, headers={"X-Forwarded-For": "198.51.100.2"}
    )
    assert spoofed.status == 429

    settings = {"enabled": True, "rules": rules, "default_per_minute": 1000}
    trusted = await aiohttp_client(
        create_app(make_config(servers, rate_limit=settings, http={"trusted_proxies": ["127.0.0.0/8"]}))
    )
    for ip in ("198.51.100.3", "198.51.100.4"):
        response = await trusted.post("/api/v1/auth/forgot-password", json=body, headers={"X-Forwarded-For": ip})
        assert response.status == 202
