"""Users: plain async queries taking a connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from lms.db import Connection, Row
from lms.tables import users

# Built once: every authenticated request's check reads the account (building costs more than running).
_GET_USER = select(users).where(users.c.id == bindparam("user_id", type_=users.c.id.type))
# One statement for any number of accounts (an IN list would be a new statement, and a new PREPARE, per length).
_GET_USERS = select(users).where(users.c.id == any_(bindparam("user_ids", type_=ARRAY(users.c.id.type))))


async def get_user(conn: Connection, user_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(_GET_USER, {"user_id": user_id})


async def get_users(conn: Connection, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Row]:
    """The accounts among ``user_ids`` that exist, by id: one query."""
    return {row["id"]: row for row in await conn.fetch_all(_GET_USERS, {"user_ids": list(user_ids)})}


async def get_user_by_email(conn: Connection, email: str) -> Row | None:
    return await conn.fetch_one(select(users).where(users.c.email == email.lower()))


async def create_user(
    conn: Connection, *, email: str, password_hash: str, full_name: str, role: str, is_active: bool = True
) -> Row:
    row = await conn.fetch_one(
        insert(users)
        .values(email=email.lower(), password_hash=password_hash, full_name=full_name, role=role, is_active=is_active)
        .returning(users)
    )
    assert row is not None
    return row


async def update_user(conn: Connection, user_id: uuid.UUID, **values: Any) -> Row | None:
    if not values:
        return await get_user(conn, user_id)
    return await conn.fetch_one(update(users).where(users.c.id == user_id).values(**values).returning(users))


async def set_password(conn: Connection, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        update(users).where(users.c.id == user_id).values(password_hash=password_hash, password_changed_at=func.now())
    )


async def record_login(conn: Connection, user_id: uuid.UUID) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=func.now()))


async def list_users(
    conn: Connection, *, role: str | None, is_active: bool | None, q: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    conditions = []
    if role is not None:
        conditions.append(users.c.role == role)
    if is_active is not None:
        conditions.append(users.c.is_active == is_active)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(users.c.email.ilike(pattern), users.c.full_name.ilike(pattern)))
    total = await conn.fetch_val(select(func.count()).select_from(users).where(*conditions))
    rows = await conn.fetch_all(
        select(users).where(*conditions).order_by(users.c.created_at.desc(), users.c.id).limit(limit).offset(offset)
    )
    return rows, int(total)
