"""Refresh tokens: stored hashed, rotated on every use, revoked by family on reuse."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select, update

from lms.db import Connection
from lms.tables import refresh_tokens


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def store_refresh_token(
    conn: Connection,
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token: str,
    expires_at: datetime,
    user_agent: str | None,
    ip_address: str | None,
) -> None:
    await conn.execute(
        insert(refresh_tokens).values(
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash(token),
            expires_at=expires_at,
            user_agent=(user_agent or "")[:300] or None,
            ip_address=ip_address,
        )
    )


async def rotate_refresh_token(conn: Connection, token: str) -> dict[str, Any] | None:
    """Mark the token used and return its row, if it was live; None otherwise.

    One UPDATE decides, so two requests racing with the same token cannot both win.
    """
    return await conn.fetch_one(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == token_hash(token),
            refresh_tokens.c.rotated_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > func.now(),
        )
        .values(rotated_at=func.now())
        .returning(refresh_tokens.c.user_id, refresh_tokens.c.family_id)
    )


async def rotated_within(conn: Connection, token: str, grace_seconds: int) -> dict[str, Any] | None:
    """The token's row if it was rotated less than ``grace_seconds`` ago and its family still lives.

    A concurrent refresh with the same token (two tabs) lands here after the
    winner's UPDATE: read after that UPDATE committed, it sees the rotation.
    """
    return await conn.fetch_one(
        select(refresh_tokens.c.user_id, refresh_tokens.c.family_id).where(
            refresh_tokens.c.token_hash == token_hash(token),
            refresh_tokens.c.rotated_at > func.now() - timedelta(seconds=grace_seconds),
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > func.now(),
        )
    )


async def find_refresh_token(conn: Connection, token: str) -> dict[str, Any] | None:
    return await conn.fetch_one(select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(token)))


async def revoke_family(conn: Connection, family_id: uuid.UUID) -> int:
    return await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def revoke_refresh_token(conn: Connection, token: str, user_id: uuid.UUID) -> int:
    return await conn.execute(
        update(refresh_tokens)
        .where(
            and_(refresh_tokens.c.token_hash == token_hash(token), refresh_tokens.c.user_id == user_id),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )


async def revoke_user_refresh_tokens(conn: Connection, user_id: uuid.UUID) -> int:
    return await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
