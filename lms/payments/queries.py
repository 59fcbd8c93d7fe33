"""The payments' SQL: plain async functions taking a connection; callers own transactions.

Revenue queries (bottom) are plain functions too, for analytics to reuse.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, literal_column, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from lms.db import Connection, Row
from lms.enrollments.studying import STUDYING
from lms.tables import courses, enrollments, payment_events, payments, subscriptions, users

# Money that came in: completed payments, and refunded ones (their refund counts apart).
COLLECTED = ("completed", "refunded")


# --- payments ----------------------------------------------------------------


async def get_payment(conn: Connection, payment_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(payments).where(payments.c.id == payment_id))


async def pending_course_payment(conn: Connection, *, user_id: uuid.UUID, course_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(
        select(payments).where(
            payments.c.user_id == user_id, payments.c.course_id == course_id, payments.c.status == "pending"
        )
    )


async def insert_payment(conn: Connection, **values: Any) -> Row | None:
    """A new pending payment; None when a pending one exists for the same student and course."""
    stmt = (
        pg_insert(payments)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["user_id", "course_id"],
            index_where=and_(payments.c.status == "pending", payments.c.course_id.is_not(None)),
        )
        .returning(payments)
    )
    return await conn.fetch_one(stmt)


async def lock_payment(
    conn: Connection,
    *,
    gateway: str,
    payment_id: uuid.UUID | None = None,
    reference: str | None = None,
    transaction_id: str | None = None,
) -> Row | None:
    """The payment an event names (our id, else the gateway reference, else the transaction), locked."""
    if payment_id is not None:
        condition = payments.c.id == payment_id
    elif reference is not None:
        condition = payments.c.gateway_reference == reference
    elif transaction_id is not None:
        condition = payments.c.gateway_transaction_id == transaction_id
    else:
        return None
    return await conn.fetch_one(
        select(payments).where(condition, payments.c.gateway == gateway).limit(1).with_for_update()
    )


async def update_payment(conn: Connection, payment_id: uuid.UUID, **values: Any) -> Row:
    row = await conn.fetch_one(update(payments).where(payments.c.id == payment_id).values(**values).returning(payments))
    assert row is not None
    return row


async def receipt_context(conn: Connection, payment_id: uuid.UUID) -> Row | None:
    """What the receipt and notifications need: the payer, and the course or plan paid for."""
    return await conn.fetch_one(
        select(
            payments,
            users.c.email,
            users.c.full_name,
            courses.c.title.label("course_title"),
            courses.c.slug.label("course_slug"),
            subscriptions.c.plan_name,
        )
        .join(users, users.c.id == payments.c.user_id)
        .outerjoin(courses, courses.c.id == payments.c.course_id)
        .outerjoin(subscriptions, subscriptions.c.id == payments.c.subscription_id)
        .where(payments.c.id == payment_id)
    )


async def claim_refund(conn: Connection, payment_id: uuid.UUID) -> Row | None:
    """Mark a refund as under way; None unless the payment is completed and no refund started."""
    return await conn.fetch_one(
        update(payments)
        .where(payments.c.id == payment_id, payments.c.status == "completed", payments.c.refund_started_at.is_(None))
        .values(refund_started_at=func.now())
        .returning(payments)
    )


async def claim_effects(conn: Connection, payment_id: uuid.UUID, statuses: tuple[str, ...]) -> Row | None:
    """Take the delivery of the current status's side effects; None when delivered or being delivered."""
    return await conn.fetch_one(
        update(payments)
        .where(
            payments.c.id == payment_id,
            payments.c.status.in_(statuses),
            payments.c.effects_status.is_distinct_from(payments.c.status),
        )
        .values(effects_status=payments.c.status)
        .returning(payments)
    )


async def release_effects(conn: Connection, payment_id: uuid.UUID, previous: str | None) -> None:
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(effects_status=previous))


async def list_user_payments(conn: Connection, *, user_id: uuid.UUID, limit: int, offset: int) -> tuple[list[Row], int]:
    condition = payments.c.user_id == user_id
    total = await conn.fetch_val(select(func.count()).select_from(payments).where(condition))
    rows = await conn.fetch_all(
        select(payments)
        .where(condition)
        .order_by(payments.c.created_at.desc(), payments.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def list_payments(
    conn: Connection, *, status: str | None, gateway: str | None, flagged: bool | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    conditions = []
    if status is not None:
        conditions.append(payments.c.status == status)
    if gateway is not None:
        conditions.append(payments.c.gateway == gateway)
    if flagged is not None:
        conditions.append(payments.c.flagged_reason.is_not(None) if flagged else payments.c.flagged_reason.is_(None))
    total = await conn.fetch_val(select(func.count()).select_from(payments).where(*conditions))
    rows = await conn.fetch_all(
        select(payments)
        .where(*conditions)
        .order_by(payments.c.created_at.desc(), payments.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def pending_payments(conn: Connection, *, older_than_seconds: int, limit: int) -> list[Row]:
    """Pending payments created at least this long ago, oldest first."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    return await conn.fetch_all(
        select(payments)
        .where(payments.c.status == "pending", payments.c.created_at <= cutoff)
        .order_by(payments.c.created_at)
        .limit(limit)
    )


# --- enrollments a payment opens and closes ----------------------------------


async def hold_enrollment(conn: Connection, *, student_id: uuid.UUID, course_id: uuid.UUID) -> Row | None:
    """The student's enrollment awaiting payment (made, or reopened from dropped/expired); None if studying."""
    stmt = pg_insert(enrollments).values(student_id=student_id, course_id=course_id, status="pending_payment")
    stmt = stmt.on_conflict_do_update(
        constraint="uq_enrollments_student_id_course_id",
        set_={"status": "pending_payment"},
        where=enrollments.c.status.notin_(STUDYING),
    )
    return await conn.fetch_one(stmt.returning(enrollments))


async def activate_enrollment(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    """Paid: the enrollment gives access; None when it already did (or was removed)."""
    return await conn.fetch_one(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id, enrollments.c.status.notin_(STUDYING))
        .values(status="active", enrolled_at=func.now(), completed_at=None)
        .returning(enrollments)
    )


async def expire_enrollment(conn: Connection, enrollment_id: uuid.UUID) -> Row | None:
    """Refunded: the enrollment stops giving access."""
    return await conn.fetch_one(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id, enrollments.c.status != "expired")
        .values(status="expired")
        .returning(enrollments)
    )


# --- webhook events ----------------------------------------------------------


async def record_event(
    conn: Connection, *, gateway: str, event_id: str, event_type: str | None, payload: Any
) -> tuple[uuid.UUID, bool]:
    """Store a verified event once; returns its row id and whether it is new (False: a repeat)."""
    row_id, inserted, _ = (await record_events(conn, [(gateway, event_id, event_type, payload)]))[(gateway, event_id)]
    return row_id, inserted


# One statement whatever the batch size (arrays, not a VALUES row per event):
# compiling a multi-row VALUES insert for every batch cost more than running it.
_RECORD_EVENTS = """
INSERT INTO payment_events (id, gateway, event_id, event_type, payload)
SELECT * FROM unnest(
    CAST(%(ids)s AS uuid[]), CAST(%(gateways)s AS text[]), CAST(%(event_ids)s AS text[]),
    CAST(%(types)s AS text[]), CAST(%(payloads)s AS jsonb[])
)
ON CONFLICT (gateway, event_id) DO NOTHING
RETURNING id, gateway, event_id
"""


async def record_events(
    conn: Connection, events: list[tuple[str, str, str | None, Any]]
) -> dict[tuple[str, str], tuple[uuid.UUID, bool, bool]]:
    """Store verified events (gateway, event id, type, payload) in one statement, each once.

    Returns, per (gateway, event id): the row id, whether this call inserted
    it, and whether it was settled already.
    """
    inserted = await conn.fetch_all(
        _RECORD_EVENTS,
        {
            "ids": [str(uuid.uuid4()) for _ in events],
            "gateways": [g for g, _, _, _ in events],
            "event_ids": [e for _, e, _, _ in events],
            "types": [t for _, _, t, _ in events],
            "payloads": [json.dumps(p) for _, _, _, p in events],
        },
    )
    result = {(r["gateway"], r["event_id"]): (r["id"], True, False) for r in inserted}
    repeats = {(g, e) for g, e, _, _ in events} - result.keys()
    if repeats:
        found = await conn.fetch_all(
            select(payment_events.c.id, payment_events.c.gateway, payment_events.c.event_id,
                   payment_events.c.processed_at)
            .where(tuple_(payment_events.c.gateway, payment_events.c.event_id).in_(sorted(repeats)))
        )  # fmt: skip
        for r in found:
            result[(r["gateway"], r["event_id"])] = (r["id"], False, r["processed_at"] is not None)
    return result


async def lock_event(conn: Connection, event_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(select(payment_events).where(payment_events.c.id == event_id).with_for_update())


async def finish_event(
    conn: Connection, event_id: uuid.UUID, *, payment_id: uuid.UUID | None, error: str | None
) -> None:
    await conn.execute(
        update(payment_events)
        .where(payment_events.c.id == event_id)
        .values(processed_at=func.now(), payment_id=payment_id, error=error)
    )


async def unsettled_events(conn: Connection, *, older_than_seconds: int, limit: int) -> list[uuid.UUID]:
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    rows = await conn.fetch_all(
        select(payment_events.c.id)
        .where(payment_events.c.processed_at.is_(None), payment_events.c.received_at <= cutoff)
        .order_by(payment_events.c.received_at)
        .limit(limit)
    )
    return [r["id"] for r in rows]


# --- subscriptions -----------------------------------------------------------


async def open_subscription(conn: Connection, user_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(
        select(subscriptions).where(
            subscriptions.c.user_id == user_id, subscriptions.c.status.in_(("pending", "active"))
        )
    )


async def insert_subscription(conn: Connection, **values: Any) -> Row | None:
    """None when the user has an open subscription already."""
    stmt = (
        pg_insert(subscriptions)
        .values(**values)
        .on_conflict_do_nothing(
            # Literal, like the index: an IN list here would make the statement skip the JSONB bind processor.
            index_elements=["user_id"],
            index_where=text("status IN ('pending', 'active')"),
        )
        .returning(subscriptions)
    )
    return await conn.fetch_one(stmt)


async def lock_subscription(
    conn: Connection, *, subscription_id: uuid.UUID | None, gateway_subscription_id: str | None
) -> Row | None:
    if subscription_id is not None:
        condition = subscriptions.c.id == subscription_id
    elif gateway_subscription_id is not None:
        condition = and_(
            subscriptions.c.gateway == "stripe", subscriptions.c.gateway_subscription_id == gateway_subscription_id
        )
    else:
        return None
    return await conn.fetch_one(select(subscriptions).where(condition).with_for_update())


async def update_subscription(conn: Connection, subscription_id: uuid.UUID, **values: Any) -> Row:
    row = await conn.fetch_one(
        update(subscriptions).where(subscriptions.c.id == subscription_id).values(**values).returning(subscriptions)
    )
    assert row is not None
    return row


async def record_period_payment(conn: Connection, **values: Any) -> Row | None:
    """A subscription period's payment, once per gateway invoice; None when recorded before."""
    stmt = (
        pg_insert(payments)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["gateway", "gateway_reference"])
        .returning(payments)
    )
    return await conn.fetch_one(stmt)


async def has_active_subscription(conn: Connection, user_id: uuid.UUID) -> bool:
    value = await conn.fetch_val(
        select(func.count())
        .select_from(subscriptions)
        .where(
            subscriptions.c.user_id == user_id,
            subscriptions.c.status == "active",
            (subscriptions.c.end_date.is_(None)) | (subscriptions.c.end_date > func.now()),
        )
    )
    return bool(value)


async def list_user_subscriptions(
    conn: Connection, *, user_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Row], int]:
    condition = subscriptions.c.user_id == user_id
    total = await conn.fetch_val(select(func.count()).select_from(subscriptions).where(condition))
    rows = await conn.fetch_all(
        select(subscriptions)
        .where(condition)
        .order_by(subscriptions.c.created_at.desc(), subscriptions.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return rows, int(total)


async def expire_lapsed_subscriptions(conn: Connection) -> int:
    """Active subscriptions whose paid period ended (no renewal came) become expired."""
    return await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.status == "active", subscriptions.c.end_date < func.now())
        .values(status="expired")
    )


# --- revenue -----------------------------------------------------------------


def _collected(
    start: datetime | None,
    end: datetime | None,
    instructor_id: uuid.UUID | None,
) -> list[Any]:
    """Money collected in [start, end) (no bound: all time), of one instructor's courses or all."""
    conditions: list[ColumnElement[bool]] = [payments.c.status.in_(COLLECTED)]
    if start is not None:
        conditions.append(payments.c.completed_at >= start)
    if end is not None:
        conditions.append(payments.c.completed_at < end)
    if instructor_id is not None:
        conditions.append(
            payments.c.course_id.in_(select(courses.c.id).where(courses.c.instructor_id == instructor_id))
        )
    return conditions


def _sums() -> list[Any]:
    gross = func.sum(payments.c.amount)
    refunded = func.coalesce(func.sum(payments.c.refunded_amount), 0)
    return [
        gross.label("gross"),
        refunded.label("refunded"),
        (gross - refunded).label("net"),
        func.count().label("payments"),
    ]


async def revenue_by_currency(
    conn: Connection,
    *,
    start: datetime | None,
    end: datetime | None,
    instructor_id: uuid.UUID | None = None,
) -> list[Row]:
    """Gross, refunded and net per currency of the money collected in [start, end)."""
    return await conn.fetch_all(
        select(payments.c.currency, *_sums())
        .where(*_collected(start, end, instructor_id))
        .group_by(payments.c.currency)
        .order_by(payments.c.currency)
    )


# A course's revenue of all time is read on every course analytics request: built once.
_COURSE_REVENUE = (
    select(payments.c.currency, *_sums())
    .where(payments.c.status.in_(COLLECTED), payments.c.course_id == bindparam("course_id"))
    .group_by(payments.c.currency)
    .order_by(payments.c.currency)
)


async def course_revenue(conn: Connection, course_id: uuid.UUID) -> list[Row]:
    """One course's money collected, all time, per currency."""
    return await conn.fetch_all(_COURSE_REVENUE, {"course_id": course_id})


async def revenue_by_day(
    conn: Connection, *, start: datetime, end: datetime, instructor_id: uuid.UUID | None = None
) -> list[Row]:
    """Per UTC day (of completion) and currency."""
    day = func.date(func.timezone("UTC", payments.c.completed_at)).label("day")
    return await conn.fetch_all(
        select(day, payments.c.currency, *_sums())
        .where(*_collected(start, end, instructor_id))
        .group_by(literal_column("day"), payments.c.currency)
        .order_by(literal_column("day"), payments.c.currency)
    )


async def revenue_by_gateway(
    conn: Connection, *, start: datetime, end: datetime, instructor_id: uuid.UUID | None = None
) -> list[Row]:
    return await conn.fetch_all(
        select(payments.c.gateway, payments.c.currency, *_sums())
        .where(*_collected(start, end, instructor_id))
        .group_by(payments.c.gateway, payments.c.currency)
        .order_by(payments.c.gateway, payments.c.currency)
    )


async def revenue_by_course(
    conn: Connection, *, start: datetime | None, end: datetime | None, instructor_id: uuid.UUID
) -> list[Row]:
    """Per course of the instructor and currency (analytics' instructor overview).

    Joined from the instructor's courses, so that each course's payments are
    read through the (course_id, status) index rather than every collected payment.
    """
    return await conn.fetch_all(
        select(payments.c.course_id, payments.c.currency, *_sums())
        .select_from(courses.join(payments, payments.c.course_id == courses.c.id))
        .where(courses.c.instructor_id == instructor_id, *_collected(start, end, None))
        .group_by(payments.c.course_id, payments.c.currency)
        .order_by(payments.c.course_id, payments.c.currency)
    )
