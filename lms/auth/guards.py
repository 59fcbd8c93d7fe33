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
from lms.logs import bind_log_context
from lms.users.queries import get_user

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
            cache.refresh_with(_start_check(app, token))
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
    if done.cancelled():
        return
    # Retrieved here, whoever awaited it (a background refresh has nobody).
    if isinstance(done.exception(), Unauthorized):
        cache.forget_token(token)


async def _check(app: web.Application, token: str) -> Principal:
    cache = app[TOKENS]
    checked_at = time.monotonic()  # entries age from before the reads below
    config = app[CONFIG]
    claims = access_claims(app, token)
    user_id = uuid.UUID(str(claims["sub"]))
    issued_at = float(claims["iat"])
    try:
        revoked = await redis_state.is_revoked(app[REDIS], jti=claims["jti"], user_id=str(user_id), issued_at=issued_at)
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
    if revoked:
        raise Unauthorized("The access token was revoked.")
    async with app[DB].connection() as conn:
        user = await get_user(conn, user_id)
    if user is None or not user["is_active"]:
        raise Unauthorized("The account is not active.")
    changed = user["password_changed_at"]
    if changed is not None and issued_at < changed.timestamp():
        raise Unauthorized("The password changed after this token was issued.")
    principal = Principal(
        id=user_id,
        role=user["role"],
        email=user["email"],
        full_name=user["full_name"],
        jti=str(claims["jti"]),
        expires_at=float(claims["exp"]),
        issued_at=issued_at,
        user=user,
    )
    cache.remember_principal(token, principal, checked_at)
    return principal


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
