"""Small builders for test data, straight into PostgreSQL (no API round trips)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import bcrypt
from sqlalchemy import insert

from lms.db import Database, Row
from lms.tables import users

PASSWORD = "correct horse battery staple"


@functools.cache
def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


async def make_user(db: Database, *, password: str = PASSWORD, **overrides: Any) -> Row:
    values: dict[str, Any] = {
        "email": f"user-{uuid.uuid4().hex[:10]}@example.com",
        "full_name": "Test Person",
        "role": "student",
        "password_hash": _hash(password),
    } | overrides
    async with db.transaction() as conn:
        row = await conn.fetch_one(insert(users).values(**values).returning(users))
    assert row is not None
    return row


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signed_in(client: Any, db: Database, **overrides: Any) -> tuple[Row, dict[str, str]]:
    """A user and the Authorization header of a fresh session."""
    user = await make_user(db, **overrides)
    tokens = await login(client, user["email"])
    return user, bearer(tokens["access_token"])
