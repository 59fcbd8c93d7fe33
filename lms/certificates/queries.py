"""Certificates: plain async queries taking a connection (callers own the transaction)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import String, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import aliased

from lms.certificates.numbers import new_number
from lms.db import Connection, Row
from lms.tables import certificates, courses, enrollments, users

instructors = aliased(users, name="instructors")

DETAILS = select(
    certificates,
    users.c.full_name.label("student_name"),
    users.c.email.label("student_email"),
    courses.c.title.label("course_title"),
    courses.c.slug.label("course_slug"),
    instructors.c.full_name.label("instructor_name"),
).select_from(
    certificates.join(users, users.c.id == certificates.c.student_id)
    .join(courses, courses.c.id == certificates.c.course_id)
    .join(instructors, instructors.c.id == courses.c.instructor_id)
)


async def record_request(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    """A pending certificate for a completed enrollment, once (the PDF is rendered by a job).

    None when the enrollment is not completed or has a certificate already
    (the unique enrollment id makes concurrent requests record one).
    """
    source = select(
        enrollments.c.id,
        enrollments.c.student_id,
        enrollments.c.course_id,
        literal(new_number(), String),
        literal("pending", String),
        func.coalesce(enrollments.c.completed_at, func.now()),
    ).where(enrollments.c.id == enrollment_id, enrollments.c.status == "completed")
    columns = ["enrollment_id", "student_id", "course_id", "certificate_number", "status", "completion_date"]
    stmt = (
        pg_insert(certificates)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["enrollment_id"])
        .returning(certificates)
    )
    return await conn.fetch_one(stmt)


async def for_enrollment(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(certificates).where(certificates.c.enrollment_id == enrollment_id))


async def retry_failed(conn: Connection, certificate_id: uuid.UUID) -> Row | None:
    """A certificate whose rendering failed for good goes back to pending (None otherwise)."""
    return await conn.fetch_one(
        update(certificates)
        .where(certificates.c.id == certificate_id, certificates.c.status == "failed")
        .values(status="pending", error=None)
        .returning(certificates)
    )


async def get_details(
    conn: Connection, *, certificate_id: uuid.UUID | None = None, number: str | None = None
) -> Row | None:
    stmt = DETAILS
    if certificate_id is not None:
        stmt = stmt.where(certificates.c.id == certificate_id)
    if number is not None:
        stmt = stmt.where(certificates.c.certificate_number == number)
    return await conn.fetch_one(stmt)


async def list_for_student(
    conn: Connection, student_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Row], int]:
    condition = certificates.c.student_id == student_id
    total = await conn.fetch_val(select(func.count()).select_from(certificates).where(condition))
    rows = await conn.fetch_all(
        DETAILS.where(condition)
        .order_by(certificates.c.created_at.desc(), certificates.c.id)
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def mark_issued(conn: Connection, certificate_id: uuid.UUID, *, pdf_path: str) -> Row | None:
    """Pending → issued, once: None when another run issued it first."""
    return await conn.fetch_one(
        update(certificates)
        .where(
            certificates.c.id == certificate_id, certificates.c.status != "issued", certificates.c.is_revoked.is_(False)
        )
        .values(status="issued", pdf_path=pdf_path, issued_at=func.now(), error=None)
        .returning(certificates)
    )


async def mark_enrollment_certified(conn: Connection, enrollment_id: uuid.UUID) -> None:
    await conn.execute(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id, enrollments.c.certificate_issued_at.is_(None))
        .values(certificate_issued_at=func.now())
    )


async def mark_failed(conn: Connection, certificate_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        update(certificates)
        .where(certificates.c.id == certificate_id, certificates.c.status == "pending")
        .values(status="failed", error=error[:2000])
    )


async def revoke(conn: Connection, certificate_id: uuid.UUID, reason: str) -> Row | None:
    """Revoked once: a second revocation keeps the first reason and time (None when unknown)."""
    await conn.execute(
        update(certificates)
        .where(certificates.c.id == certificate_id, certificates.c.is_revoked.is_(False))
        .values(is_revoked=True, revoked_at=func.now(), revocation_reason=reason)
    )
    return await get_details(conn, certificate_id=certificate_id)


def public_view(row: Row) -> dict[str, Any]:
    """What anyone holding the number may learn (the fields of ``VerificationOut``)."""
    issued = row["status"] == "issued"
    return {
        "valid": issued and not row["is_revoked"],
        "certificate_number": row["certificate_number"],
        "student_name": row["student_name"],
        "course_title": row["course_title"],
        "instructor_name": row["instructor_name"],
        "completion_date": row["completion_date"],
        "issued_at": row["issued_at"],
        "revoked": row["is_revoked"],
        "revoked_at": row["revoked_at"],
        "status": row["status"],
    }
