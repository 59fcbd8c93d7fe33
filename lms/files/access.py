"""Who may see, change and download a file: the one "load it or 404, then check" helper."""

from __future__ import annotations

import uuid

from lms.api.problems import NotFound, ValidationFailed
from lms.auth.guards import Principal
from lms.auth.permissions import owner_or_admin
from lms.db import Connection, Row
from lms.files import queries


async def load_own_file(conn: Connection, principal: Principal, file_id: uuid.UUID) -> Row:
    """The file if the caller uploaded it or is an admin; anyone else 404 (its existence is not told)."""
    row = await queries.get_file(conn, file_id)
    if row is None or not owner_or_admin(principal, row["uploader_id"]):
        raise NotFound("No such file.")
    return row


async def load_downloadable(conn: Connection, principal: Principal | None, file_id: uuid.UUID) -> Row:
    """Owner, admin, anyone for a public file, and whoever sees the content of a lesson that uses it."""
    row = await queries.get_file(conn, file_id)
    if row is None:
        raise NotFound("No such file.")
    if row["is_public"] or owner_or_admin(principal, row["uploader_id"]):
        return row
    if await queries.seen_through_a_lesson(conn, file_id, user_id=principal.id if principal else None):
        return row
    raise NotFound("No such file.")


async def check_lesson_file(conn: Connection, principal: Principal, file_id: uuid.UUID) -> None:
    """A lesson may use the caller's own uploads only (admins: any), or it would open others' private files."""
    row = await queries.get_file(conn, file_id)
    if row is None or not owner_or_admin(principal, row["uploader_id"]):
        raise ValidationFailed(
            "The lesson's file must be one you uploaded.", errors=[{"field": "file_id", "message": "no such file"}]
        )
