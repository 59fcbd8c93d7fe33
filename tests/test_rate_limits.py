"""Rate limits shared through Redis: tripping, headers, recovery."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lms.app import create_app
from lms.config import load_config
from tests.builders import PASSWORD, PRODUCTION_ENV, make_user
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
    # Recovery is the window (1 s) passing: wait it out (a wait for time, not a proof that nothing
    # happened: the next attempt must then be judged again, 401 and not 429).
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


def default_rules() -> dict[str, Any]:
    """The rate limits production ships with (the strictest defaults)."""
    production = load_config("production", environ=PRODUCTION_ENV)
    assert production.rate_limit.enabled
    return production.rate_limit.model_dump()


async def default_limited_client(aiohttp_client: Any, servers: Servers) -> Any:
    # Behind a proxy on loopback, so that each request says which address it comes from.
    config = make_config(servers, rate_limit=default_rules(), http={"trusted_proxies": ["127.0.0.0/8"]})
    return await aiohttp_client(create_app(config))


def from_address(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def test_thirty_students_sign_in_from_one_school_address_within_a_minute(
    aiohttp_client: Any, servers: Servers, db: Any
) -> None:
    client = await default_limited_client(aiohttp_client, servers)
    school = from_address("198.51.100.10")
    students = [await make_user(db) for _ in range(30)]
    logins = await asyncio.gather(
        *(
            client.post("/api/v1/auth/login", json={"email": s["email"], "password": PASSWORD}, headers=school)
            for s in students
        )
    )
    assert [r.status for r in logins] == [200] * 30
    # The same class through the OAuth2 form, and signing up on the first day.
    tokens = [
        await client.post("/api/v1/auth/token", data={"username": s["email"], "password": PASSWORD}, headers=school)
        for s in students
    ]
    assert [r.status for r in tokens] == [200] * 30
    registrations = await asyncio.gather(
        *(
            client.post(
                "/api/v1/auth/register",
                json={"email": f"pupil-{i}@school.example", "password": PASSWORD, "full_name": f"Pupil {i}"},
                headers=school,
            )
            for i in range(30)
        )
    )
    assert [r.status for r in registrations] == [201] * 30


async def test_a_strangers_failures_never_lock_the_owner_out_from_another_address(
    aiohttp_client: Any, servers: Servers, db: Any
) -> None:
    client = await default_limited_client(aiohttp_client, servers)
    owner = await make_user(db)
    stranger = from_address("203.0.113.7")
    guesses = [
        await client.post(
            "/api/v1/auth/login", json={"email": owner["email"], "password": f"guess-{i}-wrong"}, headers=stranger
        )
        for i in range(12)
    ]
    statuses = [r.status for r in guesses]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    # The stranger's address is refused for this account, even with the right password ...
    right = {"email": owner["email"], "password": PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=right, headers=stranger)).status == 429
    form = {"username": owner["email"], "password": PASSWORD}
    assert (await client.post("/api/v1/auth/token", data=form, headers=stranger)).status == 429
    # ... the owner, elsewhere, signs in at once, by either sign-in route.
    home = from_address("198.51.100.20")
    assert (await client.post("/api/v1/auth/login", json=right, headers=home)).status == 200
    assert (await client.post("/api/v1/auth/token", data=form, headers=home)).status == 200


async def test_failures_from_one_address_are_limited_across_accounts(
    aiohttp_client: Any, servers: Servers, db: Any
) -> None:
    client = await default_limited_client(aiohttp_client, servers)
    spray = from_address("203.0.113.9")
    statuses = [
        (
            await client.post(
                "/api/v1/auth/login",
                json={"email": f"victim-{i}@example.com", "password": "Winter2026!"},
                headers=spray,
            )
        ).status
        for i in range(31)
    ]
    assert statuses == [401] * 30 + [429]
    user = await make_user(db)
    right = {"email": user["email"], "password": PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=right, headers=spray)).status == 429
    assert (await client.post("/api/v1/auth/login", json=right, headers=from_address("198.51.100.30"))).status == 200


async def test_a_busy_key_spends_slices_yet_two_instances_never_pass_the_limit(
    aiohttp_client: Any, servers: Servers, db: Any
) -> None:
    # 60 a minute per user: a busy user's instance takes slices of up to 3
    # tokens ahead (lms/api/ratelimit.py Slices). Every token is counted in
    # Redis before it is spent, so both instances together pass at most 60;
    # what each holds unspent at the end (less than a slice) is all that is lost.
    a = await limited_client(aiohttp_client, servers, default_per_minute=60)
    b = await limited_client(aiohttp_client, servers, default_per_minute=60)
    user = await make_user(db)
    token = (await (await a.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})).json())[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}

    async def call(client: Any) -> int:
        return int((await client.get("/api/v1/auth/me", headers=headers)).status)

    started = time.monotonic()
    statuses = await asyncio.gather(*(call(a if i % 2 else b) for i in range(150)))
    # GCRA refills continuously (one a second here): a burst slowed by a loaded machine earns that much more.
    refilled = int(time.monotonic() - started)
    passed = statuses.count(200)
    assert set(statuses) == {200, 429}
    assert 60 - 2 * 3 <= passed <= 60 + refilled
