"""Use cases that span tokens, the database, Redis and email."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lms.appkeys import CLIENT_IP, CONFIG, REDIS
from lms.auth import queries, redis_state
from lms.auth.tokens import TokenType, issue, lifetime
from lms.db import Connection, Row
from lms.effects import EFFECTS

log = logging.getLogger(__name__)


async def start_session(
    request: web.Request, conn: Connection, user: Row, family_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """A new access token and a refresh token (of a new family, or continuing one)."""
    config = request.app[CONFIG]
    access, _ = issue(config, TokenType.ACCESS, str(user["id"]), role=user["role"])
    family = family_id or uuid.uuid4()
    refresh, refresh_claims = issue(config, TokenType.REFRESH, str(user["id"]), fam=str(family))
    await queries.store_refresh_token(
        conn,
        user_id=user["id"],
        family_id=family,
        token=refresh,
        expires_at=datetime.fromtimestamp(refresh_claims["exp"], UTC),
        user_agent=request.headers.get("User-Agent"),
        ip_address=request[CLIENT_IP],
    )
    return {
        "user": user,
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": int(lifetime(config.auth, TokenType.ACCESS).total_seconds()),
    }


# Called with (user id, cutoff) after every access token of a user issued up
# to the cutoff was revoked: the realtime layer closes that user's open
# sockets on every instance.
SessionsEnded = Callable[[uuid.UUID, float], Awaitable[None]]
SESSIONS_ENDED = web.AppKey("sessions_ended", list[SessionsEnded])


async def end_all_sessions(request: web.Request, conn: Connection, user_id: uuid.UUID) -> None:
    """Every refresh token revoked, every access token issued so far refused, open sockets closed."""
    config = request.app[CONFIG]
    await queries.revoke_user_refresh_tokens(conn, user_id)
    cutoff = await redis_state.revoke_all_access_tokens(
        request.app[REDIS], str(user_id), int(lifetime(config.auth, TokenType.ACCESS).total_seconds())
    )
    for listener in request.app.get(SESSIONS_ENDED, ()):
        try:
            await listener(user_id, cutoff)
        except Exception:  # the tokens are revoked either way; sockets then live until their token expires
            log.exception("closing the sockets of user %s failed", user_id)


def password_fingerprint(password_hash: str) -> str:
    """Binds a reset token to the password it replaces: once changed, old links die."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def link(request: web.Request, path: str, token: str) -> str:
    return f"{request.app[CONFIG].http.public_base_url.rstrip('/')}{path}?token={token}"


async def email(request: web.Request, template: str, user: Row, **context: Any) -> None:
    """Queue an email to the user; call after the transaction that motivates it has committed."""
    await request.app[EFFECTS].email(
        template, to=user["email"], full_name=user["full_name"], user_id=user["id"], **context
    )
