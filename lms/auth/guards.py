"""Who is calling, and may they: the guards a route declares.

::

    @endpoint(summary="...", guards=[require(Permission.CREATE_COURSE)])

A guard authenticates the bearer access token (signature, type, revocation,
an active account, not issued before a password change), stores the
:class:`Principal` on the request, and checks the permission or role. The
account is re-read on every request so that deactivation or a role change
takes effect at once, not when the token expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from lms.api.problems import Forbidden, ServiceUnavailable, Unauthorized
from lms.appkeys import CONFIG, DB, REDIS
from lms.auth import redis_state
from lms.auth.permissions import Permission, Role, has_permission, roles_with
from lms.auth.principals import TOKENS, TokenCache
from lms.auth.tokens import InvalidToken, TokenType, verify
from lms.db import DatabaseError, Row
from lms.logs import bind_log_context
from lms.users.queries import get_user, get_users

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    id: uuid.UUID
    role: str
    email: str
    full_name: str
    jti: str
    expires_at: float
    # The token's iat: a revocation of everything issued up to a time
    # (logout-all, password change, deactivation) covers it when iat <= that time.
    issued_at: float = 0.0
    # The account row as read for this request (saves handlers a second query).
    user: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def can(self, permission: Permission) -> bool:
        return has_permission(self.role, permission)


PRINCIPAL = web.RequestKey("principal", Principal)


class Guard:
    """A callable check with what the OpenAPI document should say about it."""

    security: tuple[str, ...] = ("bearer",)
    errors: tuple[int, ...] = (401,)

    def __init__(self, check: Callable[[web.Request], Awaitable[None]], errors: tuple[int, ...] = (401,)) -> None:
        self._check = check
        self.errors = errors

    async def __call__(self, request: web.Request) -> None:
        await self._check(request)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def access_claims(app: web.Application, token: str) -> dict[str, Any]:
    """The claims of a valid access token (verified once per instance, lms/auth/principals.py); else 401."""
    cache = app[TOKENS]
    claims = cache.claims(token)
    if claims is not None:
        return claims
    try:
        claims = verify(app[CONFIG], token, TokenType.ACCESS)
        uuid.UUID(str(claims["sub"]))
    except InvalidToken as err:
        # Never the decoder's words ("'utf-8' codec can't decode ..."): they help nobody but a prober.
        log.debug("access token refused: %s", err)
        raise Unauthorized(f"The access token is {err.public_message}.") from err
    except ValueError as err:  # a subject that is not a user id
        raise Unauthorized("The access token is not valid.") from err
    cache.remember_claims(token, claims)
    return claims


def token_subject(app: web.Application, token: str) -> str | None:
    """The user id of a valid access token, without any round trip; None for a bad token."""
    try:
        return str(access_claims(app, token)["sub"])
    except Unauthorized:
        return None


async def principal_from_token(app: web.Application, token: str, *, reuse: bool = True) -> Principal:
    """Everything an access token must pass; also used by the Socket.IO connect handlers.

    Raises :class:`Unauthorized` for a token that is bad, and
    :class:`ServiceUnavailable` when it cannot be checked (Redis down with
    ``auth.revocation_fail_closed``): the client keeps the token and retries.
    A check that passed is reused for ``auth.principal_cache_seconds`` (at
    most a second) on this instance, and renewed in the background while the
    token is in use (lms/auth/principals.py); ``reuse=False`` checks afresh
    (before trusting the account row with a password check).
    """
    cache = app[TOKENS]
    if not reuse:
        return await _check(app, token)
    known = cache.principal(token)
    if known is not None:
        if cache.refresh_due(token):  # in the background: this request goes on with the entry
            _refresh_soon(app, token)
        return known
    # Concurrent requests with one token (a page's parallel fetches, a
    # second's worth of calls when the reuse runs out) share one check.
    running = cache.checking.get(token)
    if running is not None:
        return await asyncio.shield(running)
    return await asyncio.shield(_start_check(app, token))


def _start_check(app: web.Application, token: str) -> asyncio.Future[Principal]:
    cache = app[TOKENS]
    check = asyncio.ensure_future(_check(app, token))
    cache.checking[token] = check
    cache.running.add(check)
    check.add_done_callback(lambda done: _checked(cache, token, done))
    return check


def _checked(cache: TokenCache, token: str, done: asyncio.Future[Principal]) -> None:
    cache.running.discard(done)
    if cache.checking.get(token) is done:
        del cache.checking[token]
    # Retrieved here, whoever awaited it. A check that refused the token (one with reuse=False) ends its reuse.
    if not done.cancelled() and isinstance(done.exception(), Unauthorized):
        cache.forget_token(token)


async def _check(app: web.Application, token: str) -> Principal:
    cache = app[TOKENS]
    checked_at = time.monotonic()  # entries age from before the reads below
    config = app[CONFIG]
    claims = access_claims(app, token)
    user_id = uuid.UUID(str(claims["sub"]))
    try:
        revoked = await redis_state.is_revoked(
            app[REDIS], jti=claims["jti"], user_id=str(user_id), issued_at=float(claims["iat"])
        )
    except (RedisError, OSError) as err:
        if config.auth.revocation_fail_closed:
            # 503, not 401: the token is not known to be bad, and a 401 makes clients drop it
            # (everyone signed out by a Redis outage).
            log.error("revocation check failed; refusing the token for now: %s", err)
            raise ServiceUnavailable(
                "The token cannot be checked right now; keep it and retry shortly.", type_slug="auth-check-unavailable"
            ) from err
        log.warning("revocation check failed; allowing the token (revocation_fail_closed is off): %s", err)
        revoked = False
    user = None
    if not revoked:
        async with app[DB].connection() as conn:
            user = await get_user(conn, user_id)
    principal = _principal(claims, revoked, user)
    cache.remember_principal(token, principal, checked_at)
    return principal


def _principal(claims: dict[str, Any], revoked: bool, user: Row | None) -> Principal:
    """What a token whose revocation state and account were just read proves; else 401."""
    if revoked:
        raise Unauthorized("The access token was revoked.")
    if user is None or not user["is_active"]:
        raise Unauthorized("The account is not active.")
    issued_at = float(claims["iat"])
    changed = user["password_changed_at"]
    if changed is not None and issued_at < changed.timestamp():
        raise Unauthorized("The password changed after this token was issued.")
    return Principal(
        id=user["id"],
        role=user["role"],
        email=user["email"],
        full_name=user["full_name"],
        jti=str(claims["jti"]),
        expires_at=float(claims["exp"]),
        issued_at=issued_at,
        user=user,
    )


def _refresh_soon(app: web.Application, token: str) -> None:
    """The token goes in the next background batch; the refresher starts if it is not running."""
    cache = app[TOKENS]
    cache.due[token] = None
    if cache.refresher is None:
        refresher = cache.refresher = asyncio.ensure_future(_refresh_due(app))
        cache.running.add(refresher)
        refresher.add_done_callback(lambda done: _refreshed(cache, done))


def _refreshed(cache: TokenCache, done: asyncio.Future[None]) -> None:
    cache.running.discard(done)
    if cache.refresher is done:
        cache.refresher = None
    if not done.cancelled() and done.exception() is not None:
        log.error("background token checks failed", exc_info=done.exception())


async def _refresh_due(app: web.Application) -> None:
    """Check the tokens due again, a batch at a time, until none are left.

    One batch at a time, so the tokens falling due while one runs wait for
    the next: under load a batch holds many, at the cost of one Redis round
    trip and one account query, on one connection.
    """
    cache = app[TOKENS]
    while cache.due:
        await _recheck(app, cache.take_due())


async def _recheck(app: web.Application, tokens: list[str]) -> None:
    cache = app[TOKENS]
    checked_at = time.monotonic()
    claims = {token: found for token in tokens if (found := cache.claims(token)) is not None}
    if not claims:  # every one of them expired meanwhile
        return
    try:
        revoked = await redis_state.revoked_among(
            app[REDIS], [(str(c["jti"]), str(c["sub"]), float(c["iat"])) for c in claims.values()]
        )
        async with app[DB].connection() as conn:
            accounts = await get_users(conn, {uuid.UUID(str(c["sub"])) for c in claims.values()})
    except (RedisError, OSError, DatabaseError) as err:
        # Nothing is lost: the entries run out as without refreshes, and each token is checked on its next use.
        log.warning("background token checks skipped: %s", err)
        return
    for (token, token_claims), token_revoked in zip(claims.items(), revoked, strict=True):
        try:
            principal = _principal(token_claims, token_revoked, accounts.get(uuid.UUID(str(token_claims["sub"]))))
        except Unauthorized:
            cache.forget_token(token)  # refused: its reuse ends now
        else:
            cache.remember_principal(token, principal, checked_at)


async def authenticate(request: web.Request) -> Principal:
    if PRINCIPAL in request:
        return request[PRINCIPAL]
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    principal = await principal_from_token(request.app, token)
    request[PRINCIPAL] = principal
    bind_log_context(user_id=str(principal.id))  # undone with the request's own context
    return principal


async def recheck(request: web.Request) -> Principal:
    """The caller checked afresh, not from the last second's check: for steps that verify the password."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    principal = await principal_from_token(request.app, token, reuse=False)
    request[PRINCIPAL] = principal
    return principal


def current_user(request: web.Request) -> Principal:
    """The principal a guard established; routes without a guard must not call this."""
    return request[PRINCIPAL]


async def optional_user(request: web.Request) -> Principal | None:
    """The caller of a public route that shows owners more: None without a token.

    A token that is sent but not valid is still a 401: silently treating it
    as anonymous would hide the caller's own drafts behind a 404.
    """
    if PRINCIPAL in request:
        return request[PRINCIPAL]
    if bearer_token(request) is None:
        return None
    return await authenticate(request)


async def _authenticated(request: web.Request) -> None:
    await authenticate(request)


authenticated = Guard(_authenticated)


def require(*permissions: Permission) -> Guard:
    async def check(request: web.Request) -> None:
        principal = await authenticate(request)
        missing = [p for p in permissions if not principal.can(p)]
        if missing:
            allowed = " and ".join(roles_with(*permissions))
            raise Forbidden(
                f"Your role ({principal.role}) may not do this; it is for {allowed} accounts.",
                missing=[str(p) for p in missing],
            )

    return Guard(check, errors=(401, 403))
