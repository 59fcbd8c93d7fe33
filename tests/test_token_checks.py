"""A token's check is reused for at most a second per instance; every change reaches every instance within it.

Each instance keeps a token's verified claims and, for
``auth.principal_cache_seconds`` (1 s), the principal it proved
(lms/auth/principals.py). These tests pin both halves of the promise: the
instance that made a change sees it at once, and every other instance sees
it once the bound has passed since the change, whatever it had cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import pytest

from lms.app import create_app
from lms.appkeys import DB
from lms.auth.guards import Principal, _refresh_soon
from lms.auth.principals import REFRESH_AFTER, TOKENS, TokenCache, end_checks
from lms.config import Settings
from tests.builders import PASSWORD, bearer, login, make_user, signed_in
from tests.conftest import make_config


async def past_the_reuse_bound(config: Settings, since: float | None = None) -> None:
    """Wait until ``auth.principal_cache_seconds`` has passed since ``since`` (now by default).

    Not a sleep proving that nothing happened: it waits for the promised
    bound, and the caller then asserts what must have happened by then.
    """
    since = time.monotonic() if since is None else since
    await asyncio.sleep(max(0.0, since + config.auth.principal_cache_seconds - time.monotonic()))


@pytest.fixture
async def other(aiohttp_client: Any, config: Settings) -> Any:
    """A second instance sharing PostgreSQL and Redis, as behind a load balancer."""
    return await aiohttp_client(create_app(config))


async def warmed(instance: Any, headers: dict[str, str]) -> None:
    """The instance has checked the token and holds the check."""
    for _ in range(3):
        assert (await instance.get("/api/v1/auth/me", headers=headers)).status == 200
    assert instance.app[TOKENS].hits >= 2  # reused, not checked again


async def test_a_check_is_reused_and_the_account_read_about_once_a_second(client: Any, db: Any) -> None:
    _, headers = await signed_in(client, db)
    cache = client.app[TOKENS]
    misses = cache.misses
    for _ in range(20):
        assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
    assert cache.misses - misses <= 2  # the first check, and at most one more as the second passes


async def until_refresh_due(config: Settings, checked_at: float) -> None:
    """Wait for the age at which a token in use is checked again in the background (a promised point)."""
    due = checked_at + config.auth.principal_cache_seconds * max(REFRESH_AFTER)
    await asyncio.sleep(max(0.0, due - time.monotonic()) + 0.01)


async def test_a_token_in_use_is_checked_again_before_its_check_runs_out(
    client: Any, db: Any, config: Settings
) -> None:
    _, headers = await signed_in(client, db)
    token = headers["Authorization"].split()[1]
    cache = client.app[TOKENS]
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
    first = cache._entries[token].checked_at
    async with contextlib.AsyncExitStack() as held:
        # Every database connection is taken: a request that waited for its check would hang here.
        for _ in range(client.app[DB].max_size):
            await held.enter_async_context(client.app[DB].connection())
        await until_refresh_due(config, first)
        served = await asyncio.wait_for(client.get("/api/v1/auth/me", headers=headers), 5)
        assert served.status == 200
        refresh = cache.refresher
        assert refresh is not None and not refresh.done()
    await refresh
    assert cache._entries[token].checked_at > first
    misses = cache.misses
    await past_the_reuse_bound(config, first)  # the first check has run out; the refreshed one has not
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
    assert cache.misses == misses


async def test_shutdown_ends_the_checks_under_way(client: Any, db: Any, config: Settings) -> None:
    _, headers = await signed_in(client, db)
    token = headers["Authorization"].split()[1]
    cache = client.app[TOKENS]
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
    async with contextlib.AsyncExitStack() as held:
        database = client.app[DB]
        for _ in range(database.max_size):
            await held.enter_async_context(database.connection())
        await until_refresh_due(config, cache._entries[token].checked_at)
        assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
        (refresh,) = cache.running
        async with asyncio.timeout(5):
            while not database._gate._waiters:  # the check waits for a connection (none will come)
                await asyncio.sleep(0.001)
        await end_checks(client.app)  # the shutdown step
        assert refresh.cancelled() and not cache.running and cache.refresher is None


async def test_a_refresh_that_finds_the_token_revoked_ends_its_reuse_at_once(
    client: Any, other: Any, db: Any, config: Settings
) -> None:
    _, headers = await signed_in(client, db)
    token = headers["Authorization"].split()[1]
    await warmed(other, headers)
    checked_at = other.app[TOKENS]._entries[token].checked_at
    assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status == 204
    await until_refresh_due(config, checked_at)
    assert (await other.get("/api/v1/auth/me", headers=headers)).status in (200, 401)  # the entry, or past it
    refresh = other.app[TOKENS].refresher
    if refresh is not None:
        await refresh
    assert other.app[TOKENS].principal(token) is None
    assert (await other.get("/api/v1/auth/me", headers=headers)).status == 401


async def test_tokens_due_together_are_checked_again_in_one_batch(client: Any, db: Any, config: Settings) -> None:
    sessions = [(await signed_in(client, db))[1] for _ in range(12)]
    cache = client.app[TOKENS]
    for headers in sessions:
        assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
    tokens = [headers["Authorization"].split()[1] for headers in sessions]
    first = max(cache._entries[token].checked_at for token in tokens)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(client.app[DB].max_size):  # the refresher's first batch waits for a connection
            await held.enter_async_context(client.app[DB].connection())
        await until_refresh_due(config, first)
        for headers in sessions:
            assert (await client.get("/api/v1/auth/me", headers=headers)).status == 200
        refresh = cache.refresher
        assert refresh is not None and not refresh.done()
    await refresh
    checked = {cache._entries[token].checked_at for token in tokens}
    assert len(checked) <= 2 and min(checked) > first  # the first due alone, the rest together once it had a connection
    assert not cache.due


async def test_a_batch_judges_each_token_on_its_own(client: Any, other: Any, db: Any, config: Settings) -> None:
    """One batch: a revoked token, a deactivated account's and a good one, each judged on its own."""
    _, admin = await signed_in(client, db, role="admin")
    users = [await make_user(db) for _ in range(3)]
    sessions = [bearer((await login(other, user["email"]))["access_token"]) for user in users]
    cache = other.app[TOKENS]
    for headers in sessions:
        await warmed(other, headers)
    revoked, deactivated, kept = (headers["Authorization"].split()[1] for headers in sessions)
    assert (await client.post("/api/v1/auth/logout-all", headers=sessions[0])).status == 204
    response = await client.patch(f"/api/v1/users/{users[1]['id']}", json={"is_active": False}, headers=admin)
    assert response.status == 200
    first = max(cache._entries[token].checked_at for token in (revoked, deactivated, kept))
    await until_refresh_due(config, first)
    assert all(cache.refresh_due(token) for token in (revoked, deactivated, kept))
    for token in (revoked, deactivated, kept):  # as three requests in one turn of the loop would
        _refresh_soon(other.app, token)
    assert list(cache.due) == [revoked, deactivated, kept]
    refresh = cache.refresher
    assert refresh is not None
    await refresh
    assert cache.principal(revoked) is None and cache.principal(deactivated) is None
    assert cache.principal(kept) is not None and cache._entries[kept].checked_at > first
    assert [(await other.get("/api/v1/auth/me", headers=h)).status for h in sessions] == [401, 401, 200]


async def test_a_token_is_due_once_until_its_batch_proves_it() -> None:
    cache = TokenCache(ttl_seconds=1.0)
    expires = time.time() + 600
    long_ago = time.monotonic() - max(REFRESH_AFTER)  # due, still within the bound
    tokens = [f"token-{n}" for n in range(4)]
    for n, token in enumerate(tokens):
        cache.remember_claims(token, {"exp": expires})
        principal = Principal(uuid.UUID(int=n + 1), "student", f"s{n}@example.com", "S", f"jti-{n}", expires)
        cache.remember_principal(token, principal, long_ago)
    assert all(cache.refresh_due(token) for token in tokens)
    cache.checking[tokens[0]] = asyncio.get_running_loop().create_future()  # a check of it under way
    assert not cache.refresh_due(tokens[0])
    cache.due.update(dict.fromkeys(tokens[1:]))
    assert not any(cache.refresh_due(token) for token in tokens[1:])  # waiting for a batch
    assert cache.take_due(limit=2) == tokens[1:3] and list(cache.due) == tokens[3:]
    assert not cache.refresh_due(tokens[1])  # in a batch under way
    assert cache.principal(tokens[1]) is not None  # the entries still serve until the bound
    cache.remember_principal(tokens[1], cache._entries[tokens[1]].principal, long_ago)  # the batch proved it
    assert cache.refresh_due(tokens[1])


async def test_logout_all_reaches_every_instance_within_the_bound(
    client: Any, other: Any, db: Any, config: Settings
) -> None:
    _, headers = await signed_in(client, db)
    await warmed(other, headers)
    assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status == 204
    changed = time.monotonic()
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 401
    await past_the_reuse_bound(config, changed)
    assert (await other.get("/api/v1/auth/me", headers=headers)).status == 401


async def test_deactivation_reaches_every_instance_within_the_bound(
    client: Any, other: Any, db: Any, config: Settings
) -> None:
    _, admin = await signed_in(client, db, role="admin")
    user = await make_user(db)
    headers = bearer((await login(other, user["email"]))["access_token"])
    await warmed(other, headers)
    response = await client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin)
    assert response.status == 200
    changed = time.monotonic()
    await past_the_reuse_bound(config, changed)
    assert (await other.get("/api/v1/auth/me", headers=headers)).status == 401


async def test_a_role_change_reaches_every_instance_within_the_bound(
    client: Any, other: Any, db: Any, config: Settings
) -> None:
    _, root = await signed_in(client, db, role="admin")
    demoted = await make_user(db, role="admin")
    headers = bearer((await login(other, demoted["email"]))["access_token"])
    assert (await other.get("/api/v1/users", headers=headers)).status == 200
    await warmed(other, headers)
    assert (await client.patch(f"/api/v1/users/{demoted['id']}", json={"role": "student"}, headers=root)).status == 200
    changed = time.monotonic()
    await past_the_reuse_bound(config, changed)
    assert (await other.get("/api/v1/users", headers=headers)).status == 403
    assert (await (await other.get("/api/v1/auth/me", headers=headers)).json())["role"] == "student"


async def test_a_password_check_never_trusts_a_reused_account_row(client: Any, other: Any, db: Any) -> None:
    # A password changed on one instance: another instance that still holds the
    # caller's check must not accept the old password for a sensitive step.
    user = await make_user(db)
    headers = bearer((await login(other, user["email"]))["access_token"])
    fresh = bearer((await login(client, user["email"]))["access_token"])
    await warmed(other, headers)
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another good passphrase"},
        headers=fresh,
    )
    assert changed.status == 204
    again = await other.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a third good passphrase"},
        headers=headers,
    )
    assert again.status == 401  # checked afresh: the token was revoked by the change


async def test_with_no_reuse_every_request_is_checked(aiohttp_client: Any, servers: Any, db: Any) -> None:
    config = make_config(servers, auth={"principal_cache_seconds": 0})
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))
    _, headers = await signed_in(first, db)
    await second.get("/api/v1/auth/me", headers=headers)
    assert (await first.post("/api/v1/auth/logout", headers=headers)).status == 204
    assert (await second.get("/api/v1/auth/me", headers=headers)).status == 401
    assert second.app[TOKENS].hits == 0
