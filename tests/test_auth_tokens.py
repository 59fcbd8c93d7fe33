"""Sign-in, token checks, rotation and revocation through the public API."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select, update

from lms.app import create_app
from lms.auth.tokens import TokenType, issue
from lms.config import Settings
from lms.tables import refresh_tokens
from tests.builders import PASSWORD, bearer, login, make_user, signed_in
from tests.test_token_checks import past_the_reuse_bound

PROBLEM = "application/problem+json"


async def test_login_returns_tokens_and_the_user(client: Any, db: Any) -> None:
    user = await make_user(db, email="ada@example.com")
    body = await login(client, "ADA@example.com")
    assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
    assert body["user"]["id"] == str(user["id"]) and "password_hash" not in body["user"]
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status == 200 and (await me.json())["email"] == "ada@example.com"
    assert (await me.json())["last_login_at"] is not None


async def test_wrong_password_and_unknown_email_look_the_same(client: Any, db: Any) -> None:
    await make_user(db, email="known@example.com")
    wrong = await client.post("/api/v1/auth/login", json={"email": "known@example.com", "password": "nope-nope-nope"})
    unknown = await client.post("/api/v1/auth/login", json={"email": "ghost@example.com", "password": "nope-nope-nope"})
    assert wrong.status == unknown.status == 401
    a, b = await wrong.json(content_type=PROBLEM), await unknown.json(content_type=PROBLEM)
    assert {k: v for k, v in a.items() if k != "request_id"} == {k: v for k, v in b.items() if k != "request_id"}


async def test_oauth2_password_grant_with_a_form(client: Any, db: Any) -> None:
    user = await make_user(db)
    response = await client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": PASSWORD, "grant_type": "password"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["token_type"] == "bearer" and body["access_token"] and body["refresh_token"]


async def test_missing_token_is_401_with_challenge(client: Any) -> None:
    response = await client.get("/api/v1/auth/me")
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.content_type == PROBLEM


async def test_expired_tampered_wrong_type_and_alg_none_tokens_are_refused(
    client: Any, db: Any, config: Settings
) -> None:
    user = await make_user(db)
    sub = str(user["id"])
    expired, _ = issue(config, TokenType.ACCESS, sub, role="student", now=datetime.now(UTC) - timedelta(hours=1))
    good, _ = issue(config, TokenType.ACCESS, sub, role="student")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    wrong_type, _ = issue(config, TokenType.REFRESH, sub, fam="x")
    reset_type, _ = issue(config, TokenType.PASSWORD_RESET, sub, pwd="x")
    unsigned = jwt.encode({**claims, "role": "student"}, key=None, algorithm="none")  # type: ignore[arg-type]
    other_key = jwt.encode(claims, "another-secret-of-sufficient-length-0000000", algorithm="HS256")
    for token in (expired, tampered, wrong_type, reset_type, unsigned, other_key, "garbage", ""):
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401, token
        assert response.content_type == PROBLEM
    assert (await client.get("/api/v1/auth/me", headers=bearer(good))).status == 200


async def test_refresh_rotates_and_reuse_revokes_the_family(client: Any, db: Any) -> None:
    user = await make_user(db)
    first = await login(client, user["email"])
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status == 200
    second = await rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"]

    await age_rotations(db, seconds=60)  # past auth.refresh_reuse_grace_seconds
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status == 401
    # The thief replayed the old token: the legitimate newer one dies with its family.
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status == 401
    # Another device's session (another family) is untouched.
    other = await login(client, user["email"])
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})).status == 200


async def age_rotations(db: Any, *, seconds: int) -> None:
    """As if every rotation happened ``seconds`` earlier."""
    async with db.transaction() as conn:
        await conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.rotated_at.is_not(None))
            .values(rotated_at=refresh_tokens.c.rotated_at - timedelta(seconds=seconds))
        )


async def test_tabs_refreshing_at_once_all_stay_signed_in(
    client: Any, aiohttp_client: Any, db: Any, config: Settings
) -> None:
    """Concurrent refreshes with one token, on two instances: each gets tokens of the family, none is logged out."""
    other = await aiohttp_client(create_app(config))  # shares PostgreSQL and Redis
    user = await make_user(db)
    first = await login(client, user["email"])
    body = {"refresh_token": first["refresh_token"]}
    responses = await asyncio.gather(*(c.post("/api/v1/auth/refresh", json=body) for c in (client, other) * 3))
    assert [r.status for r in responses] == [200] * 6, [await r.text() for r in responses]
    issued = [await r.json() for r in responses]
    assert len({t["refresh_token"] for t in issued}) == 6
    assert all(r.headers["Cache-Control"] == "no-store" for r in responses)
    # Every successor works: each tab goes on with its own.
    for tokens in issued:
        assert (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status == 200
        again = await other.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status == 200
    async with db.connection() as conn:
        families = await conn.fetch_all(select(refresh_tokens.c.family_id).distinct())
    assert len(families) == 1


async def test_an_access_token_is_not_a_refresh_token(client: Any, db: Any) -> None:
    user = await make_user(db)
    tokens = await login(client, user["email"])
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status == 401


async def test_logout_revokes_the_token_on_every_instance(
    client: Any, aiohttp_client: Any, db: Any, config: Settings
) -> None:
    second_instance = await aiohttp_client(create_app(config))  # shares PostgreSQL and Redis
    user = await make_user(db)
    tokens = await login(client, user["email"])
    headers = bearer(tokens["access_token"])
    assert (await second_instance.get("/api/v1/auth/me", headers=headers)).status == 200
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers)
    assert out.status == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 401  # here: at once
    await past_the_reuse_bound(config)  # elsewhere: within auth.principal_cache_seconds (tests/test_token_checks.py)
    assert (await second_instance.get("/api/v1/auth/me", headers=headers)).status == 401
    assert (
        await second_instance.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status == 401


async def test_logout_without_a_body(client: Any, db: Any) -> None:
    _, headers = await signed_in(client, db)
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 401


async def test_logout_all_ends_every_session(client: Any, db: Any) -> None:
    user = await make_user(db)
    phone, laptop = await login(client, user["email"]), await login(client, user["email"])
    assert (await client.post("/api/v1/auth/logout-all", headers=bearer(laptop["access_token"]))).status == 204
    for device in (phone, laptop):
        assert (await client.get("/api/v1/auth/me", headers=bearer(device["access_token"]))).status == 401
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": device["refresh_token"]})
        ).status == 401
    fresh = await login(client, user["email"])
    assert (await client.get("/api/v1/auth/me", headers=bearer(fresh["access_token"]))).status == 200


async def test_inactive_user_cannot_sign_in_or_use_a_token(client: Any, db: Any) -> None:
    _, admin = await signed_in(client, db, role="admin")
    user = await make_user(db)
    tokens = await login(client, user["email"])
    response = await client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin)
    assert response.status == 200 and (await response.json())["is_active"] is False
    assert (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status == 401
    assert (await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})).status == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status == 401


async def test_revocation_check_fails_closed_when_redis_is_down(aiohttp_client: Any, db: Any, servers: Any) -> None:
    from tests.conftest import make_config

    config = make_config(servers, redis={"url": "redis://127.0.0.1:1/0", "socket_timeout_seconds": 0.3})
    client = await aiohttp_client(create_app(config))
    user = await make_user(db)
    token, _ = issue(config, TokenType.ACCESS, str(user["id"]), role="student")
    response = await client.get("/api/v1/auth/me", headers=bearer(token))
    # Not 401: the token is not known to be bad; the client keeps it and retries.
    assert response.status == 503 and int(response.headers["Retry-After"]) >= 1
    assert (await response.json(content_type=PROBLEM))["type"].endswith("/auth-check-unavailable")


async def test_revocation_check_may_fail_open_in_development(aiohttp_client: Any, db: Any, servers: Any) -> None:
    from tests.conftest import make_config

    config = make_config(
        servers,
        redis={"url": "redis://127.0.0.1:1/0", "socket_timeout_seconds": 0.3},
        auth={"revocation_fail_closed": False},
    )
    client = await aiohttp_client(create_app(config))
    user = await make_user(db)
    token, _ = issue(config, TokenType.ACCESS, str(user["id"]), role="student")
    assert (await client.get("/api/v1/auth/me", headers=bearer(token))).status == 200


async def test_token_responses_are_never_cached(client: Any, db: Any) -> None:
    user = await make_user(db)
    answers = [
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}),
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": "wrong-password"}),
        await client.post(
            "/api/v1/auth/token",
            data={"username": user["email"], "password": PASSWORD},
        ),
        await client.post(
            "/api/v1/auth/register", json={"email": "new@example.com", "password": PASSWORD, "full_name": "New"}
        ),
    ]
    assert [a.status for a in answers] == [200, 401, 200, 201]
    for answer in answers:
        assert answer.headers["Cache-Control"] == "no-store" and answer.headers["Pragma"] == "no-cache"
    # Other responses are not affected.
    assert "Pragma" not in (await client.get("/api/v1/courses")).headers


async def test_a_401_never_quotes_the_token_decoder(client: Any, db: Any, config: Settings) -> None:
    def segment(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    not_utf8 = segment(b"\xff\xfe") + "." + segment(b"{}") + ".c2ln"
    for token in (not_utf8, "a.b.c", "x" * 50, segment(b'{"alg":"none"}') + ".e30."):
        response = await client.get("/api/v1/auth/me", headers=bearer(token))
        body = await response.json(content_type=PROBLEM)
        assert response.status == 401 and body["detail"] == "The access token is not valid.", body
    user = await make_user(db)
    expired, _ = issue(config, TokenType.ACCESS, str(user["id"]), now=datetime.now(UTC) - timedelta(hours=1))
    body = await (await client.get("/api/v1/auth/me", headers=bearer(expired))).json(content_type=PROBLEM)
    assert body["detail"] == "The access token is expired."
