"""Settling payments: apply what a verified event (or a status lookup) says, exactly once.

Every settlement runs :func:`settle_event` on a stored event, whether it came
from a webhook or from reconciliation. In one transaction it locks the event,
then the payment (``FOR UPDATE``), moves the payment along its state machine
and records the event as processed; a repeat, a duplicate delivery or a
racing reconciliation finds the event processed or the payment moved, and
changes nothing. The allowed moves make the order of arrival irrelevant:

    pending | failed | expired --completed--> completed --refunded--> refunded
    pending --failed--> failed,  pending --expired--> expired

so a late ``failed`` after ``completed`` changes nothing. The side effects
of a new status (receipt email, ``notification``s, the dashboard event) are
delivered after the commit by whoever claims them first
(``payments.effects_status``), so a settlement re-run after a crash delivers
what is missing, once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func

from lms.db import Connection, Database, Row
from lms.effects import Effects
from lms.enrollments import queries as enrollment_queries
from lms.events import EnrollmentCreated
from lms.metrics import PaymentMetrics
from lms.money import from_minor, money, to_minor
from lms.payments import models, queries
from lms.payments.outcomes import (
    Change,
    PaymentChange,
    SubscriptionChange,
    myfatoorah_v1,
    myfatoorah_v2,
    paymob_transaction,
    stripe_event,
)

log = logging.getLogger(__name__)

RECONCILIATION_KEY = "reconciliation"
EFFECT_STATUSES = ("completed", "failed")


@dataclass(frozen=True)
class Applied:
    payment_id: uuid.UUID | None
    note: str | None  # why nothing (or not everything) changed; stored on the event


# --- reading stored events ---------------------------------------------------


def interpret(gateway: str, payload: Any) -> Change:
    """The change a stored (verified) payload asks for; raises pydantic's ValidationError if malformed."""
    if isinstance(payload, dict) and RECONCILIATION_KEY in payload:
        return change_from_dict(payload[RECONCILIATION_KEY])
    if gateway == "stripe":
        return stripe_event(models.StripeEvent.model_validate(payload))
    if gateway == "paymob":
        return paymob_transaction(models.PaymobCallback.model_validate(payload).obj)
    if isinstance(payload, dict) and isinstance(payload.get("Event"), dict):
        return myfatoorah_v2(models.MyFatoorahV2.model_validate(payload))
    return myfatoorah_v1(models.MyFatoorahV1.model_validate(payload))


def change_to_dict(change: PaymentChange) -> dict[str, Any]:
    data = asdict(change)
    data["payment_id"] = str(change.payment_id) if change.payment_id else None
    return data


def change_from_dict(data: dict[str, Any]) -> PaymentChange:
    values = dict(data)
    values["payment_id"] = uuid.UUID(values["payment_id"]) if values.get("payment_id") else None
    return PaymentChange(**values)


# --- settling ----------------------------------------------------------------


async def settle_event(
    db: Database, effects: Effects, event_id: uuid.UUID, *, metrics: PaymentMetrics | None = None
) -> str:
    """Apply a stored event if it was not yet, then deliver its payment's pending side effects.

    ``metrics`` (the worker's) counts how long events waited between intake and settlement.
    """
    async with db.transaction() as conn:
        event = await queries.lock_event(conn, event_id)
        if event is None:
            log.warning("payment event %s does not exist", event_id)
            return "missing"
        if event["processed_at"] is not None:
            applied = Applied(event["payment_id"], "already processed")
        else:
            change = interpret(event["gateway"], event["payload"])
            applied = await apply(conn, event["gateway"], change)
            await queries.finish_event(conn, event_id, payment_id=applied.payment_id, error=applied.note)
            if metrics is not None:
                waited = (datetime.now(UTC) - event["received_at"]).total_seconds()
                metrics.settlement_seconds.labels(event["gateway"]).observe(max(0.0, waited))
    if applied.note and applied.note != "already processed":
        log.info("payment event %s (%s): %s", event_id, event["event_type"], applied.note)
    if applied.payment_id is not None:
        await deliver_effects(db, effects, applied.payment_id)
    return applied.note or "applied"


async def record_failure(db: Database, event_id: uuid.UUID, error: str) -> None:
    """An event that cannot be settled at all: marked processed with the reason, for people to look at."""
    async with db.connection() as conn:
        await queries.finish_event(conn, event_id, payment_id=None, error=error[:2000])


async def apply(conn: Connection, gateway: str, change: Change) -> Applied:
    if change is None:
        return Applied(None, "nothing to apply (event type not acted on)")
    if isinstance(change, SubscriptionChange):
        return await apply_subscription(conn, change)
    return await apply_payment(conn, gateway, change)


async def _find_payment(conn: Connection, gateway: str, change: PaymentChange) -> tuple[Row | None, str | None]:
    payment = await queries.lock_payment(
        conn, gateway=gateway, payment_id=change.payment_id, reference=change.reference,
        transaction_id=None if change.payment_id or change.reference else change.transaction_id,
    )  # fmt: skip
    if payment is None:
        return None, "unknown payment"
    stored = payment["gateway_reference"]
    if change.reference is not None and stored is not None and change.reference != stored:
        log.warning(
            "payment %s: event names %s reference %r, the payment has %r; ignored",
            payment["id"], gateway, change.reference, stored,
        )  # fmt: skip
        return None, "reference mismatch"
    return payment, None


def _amount_mismatch(payment: Row, change: PaymentChange) -> str | None:
    expected = to_minor(payment["amount"], payment["currency"])
    if change.amount_minor is None or change.currency is None:
        return "the event carries no amount"
    if change.currency != payment["currency"] or change.amount_minor != expected:
        return (
            f"the event says {change.amount_minor} minor units of {change.currency}; "
            f"the payment is {expected} of {payment['currency']}"
        )
    return None


async def apply_payment(conn: Connection, gateway: str, change: PaymentChange) -> Applied:
    payment, problem = await _find_payment(conn, gateway, change)
    if payment is None:
        log.warning("%s event for an unknown payment (%s): nothing changes", gateway, change)
        return Applied(None, problem)
    pid, status = payment["id"], payment["status"]
    if change.kind == "completed":
        if status not in ("pending", "failed", "expired"):
            return Applied(pid, f"already {status}")
        mismatch = _amount_mismatch(payment, change)
        if mismatch is not None:
            log.warning("payment %s left unpaid: %s", pid, mismatch)
            await queries.update_payment(conn, pid, flagged_reason=f"amount mismatch: {mismatch}")
            return Applied(pid, f"amount mismatch: {mismatch}")
        await queries.update_payment(
            conn, pid, status="completed", completed_at=func.now(), failure_reason=None,
            gateway_transaction_id=change.transaction_id or payment["gateway_transaction_id"],
            payment_method=change.payment_method or payment["payment_method"],
        )  # fmt: skip
        if payment["enrollment_id"] is not None and await queries.activate_enrollment(conn, payment["enrollment_id"]):
            # Re-opened after a drop or a refund: counters from what was done before.
            await enrollment_queries.refresh_progress(conn, enrollment_id=payment["enrollment_id"])
        return Applied(pid, None)
    if change.kind in ("failed", "expired"):
        if status != "pending":
            return Applied(pid, f"already {status}")
        await queries.update_payment(conn, pid, status=change.kind, failure_reason=change.reason)
        return Applied(pid, None)
    # refunded
    if status == "refunded":
        return Applied(pid, "already refunded")
    if status != "completed":
        return Applied(pid, f"a refund of a {status} payment: nothing changes")
    refunded = payment["amount"]
    if change.refunded_minor and change.currency in (None, payment["currency"]):
        refunded = min(from_minor(change.refunded_minor, payment["currency"]), Decimal(payment["amount"]))
    await record_refund(conn, payment, refunded)
    return Applied(pid, None)


async def record_refund(conn: Connection, payment: Row, amount: Decimal) -> Row:
    """The payment is refunded (wholly or in part) and its enrollment stops giving access."""
    row = await queries.update_payment(
        conn, payment["id"], status="refunded", refunded_amount=amount, refunded_at=func.now(),
        refund_started_at=func.coalesce(payment["refund_started_at"], func.now()),
    )  # fmt: skip
    if payment["enrollment_id"] is not None:
        await queries.expire_enrollment(conn, payment["enrollment_id"])
    return row


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((d for d in (a, b) if d is not None), default=None)


async def apply_subscription(conn: Connection, change: SubscriptionChange) -> Applied:
    sub = await queries.lock_subscription(
        conn, subscription_id=change.subscription_id, gateway_subscription_id=change.gateway_subscription_id
    )
    if sub is None:
        log.warning("stripe event for an unknown subscription (%s): nothing changes", change)
        return Applied(None, "unknown subscription")
    known = sub["gateway_subscription_id"]
    if change.gateway_subscription_id and known and change.gateway_subscription_id != known:
        log.warning(
            "subscription %s: event names %s, stored %s; ignored", sub["id"], change.gateway_subscription_id, known
        )
        return Applied(None, "subscription mismatch")
    sid, status = sub["id"], sub["status"]
    link = {"gateway_subscription_id": known or change.gateway_subscription_id}
    if change.kind == "checkout_completed":
        if change.checkout_id and sub["gateway_checkout_id"] and change.checkout_id != sub["gateway_checkout_id"]:
            return Applied(None, "checkout session mismatch")
        if status == "pending":
            await queries.update_subscription(conn, sid, status="active", start_date=func.now(), **link)
        else:
            await queries.update_subscription(conn, sid, **link)
        return Applied(None, None)
    if change.kind == "checkout_expired":
        if status == "pending":
            await queries.update_subscription(conn, sid, status="expired")
        return Applied(None, None)
    if change.kind == "period_paid":
        return await _period_paid(conn, sub, change, link)
    if status in ("cancelled", "expired") and change.kind == "updated":
        return Applied(None, f"already {status}")  # an older update arriving late
    if change.kind == "cancelled":
        await queries.update_subscription(
            conn, sid, status="cancelled", cancelled_at=func.now(), end_date=change.ended_at or func.now(), **link
        )
        return Applied(None, None)
    new_status = {"active": "active", "trialing": "active", "canceled": "cancelled", "incomplete_expired": "expired"}
    values: dict[str, Any] = dict(link)
    if change.status in new_status:
        values["status"] = new_status[change.status]
    if change.period_end is not None:
        values["end_date"] = _later(sub["end_date"], change.period_end)
    if change.period_start is not None and sub["start_date"] is None:
        values["start_date"] = change.period_start
    if values.get("status") == "cancelled":
        values["cancelled_at"] = func.now()
    await queries.update_subscription(conn, sid, **values)
    return Applied(None, None)


async def _period_paid(conn: Connection, sub: Row, change: SubscriptionChange, link: dict[str, Any]) -> Applied:
    expected = to_minor(sub["amount"], sub["currency"])
    if change.amount_minor != expected or change.currency != sub["currency"]:
        message = (
            f"invoice {change.invoice_id}: {change.amount_minor} {change.currency}, "
            f"plan is {expected} {sub['currency']}"
        )
        log.warning("subscription %s period not applied: %s", sub["id"], message)
        return Applied(None, f"amount mismatch: {message}")
    payment = await queries.record_period_payment(
        conn, user_id=sub["user_id"], subscription_id=sub["id"], amount=sub["amount"], currency=sub["currency"],
        gateway="stripe", status="completed", gateway_reference=change.invoice_id, completed_at=func.now(),
        metadata={"period_start": change.period_start.isoformat() if change.period_start else None,
                  "period_end": change.period_end.isoformat() if change.period_end else None},
    )  # fmt: skip
    values: dict[str, Any] = dict(link)
    if sub["status"] in ("pending", "active"):
        values["status"] = "active"
        values["start_date"] = sub["start_date"] or change.period_start or func.now()
        values["end_date"] = _later(sub["end_date"], change.period_end)
    await queries.update_subscription(conn, sub["id"], **values)
    if payment is None:
        return Applied(None, "period already recorded")
    return Applied(payment["id"], None)


# --- side effects ------------------------------------------------------------


async def deliver_effects(db: Database, effects: Effects, payment_id: uuid.UUID) -> bool:
    """Receipt, notifications and dashboard event for the payment's new status, by one caller once."""
    async with db.connection() as conn:
        context = await queries.receipt_context(conn, payment_id)
        if context is None or context["status"] not in EFFECT_STATUSES:
            return False
        if context["effects_status"] == context["status"]:
            return False
        if await queries.claim_effects(conn, payment_id, EFFECT_STATUSES) is None:
            return False  # another settlement delivers them
    status = context["status"]
    amount = money(context["amount"], context["currency"])
    description = context["course_title"] or (f"Subscription: {context['plan_name']}" if context["plan_name"] else "")
    if status == "completed":
        try:
            await effects.email(
                "payment_confirmation", to=context["email"], full_name=context["full_name"],
                user_id=context["user_id"], message_id=f"<payment-{payment_id}-completed@lms>",
                amount=amount["amount"] if amount else "", currency=context["currency"], description=description,
            )  # fmt: skip
        except Exception:
            # Nothing was delivered: give the claim back so the retry delivers it.
            async with db.connection() as conn:
                await queries.release_effects(conn, payment_id, context["effects_status"])
            raise
    await _notify(effects, context, status, amount)
    return True


async def _notify(effects: Effects, context: Row, status: str, amount: dict[str, str] | None) -> None:
    user_id, payment_id = context["user_id"], str(context["id"])
    course_id = str(context["course_id"]) if context["course_id"] else None
    if status == "completed":
        await effects.notify(
            user_id, "payment_completed",
            {"payment_id": payment_id, "course_id": course_id, "amount": amount,
             "subscription_id": str(context["subscription_id"]) if context["subscription_id"] else None},
        )  # fmt: skip
        if context["enrollment_id"] is not None:
            await effects.notify(
                user_id, "enrollment_activated",
                {"enrollment_id": str(context["enrollment_id"]), "course_id": course_id, "payment_id": payment_id},
            )  # fmt: skip
    else:
        await effects.notify(
            user_id, "payment_failed",
            {"payment_id": payment_id, "course_id": course_id, "reason": context["failure_reason"]},
        )  # fmt: skip
    studying = context["enrollment_id"] is not None and context["course_id"] is not None
    if status == "completed" and studying:
        await effects.publish(
            EnrollmentCreated(
                course_id=context["course_id"], enrollment_id=context["enrollment_id"],
                student_id=user_id, student_name=context["full_name"], status="active",
            )
        )  # fmt: skip
    log.info("payment %s %s: effects delivered", payment_id, status)
