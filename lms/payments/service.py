"""Checkout, subscriptions and refunds: the use cases that call a gateway.

A gateway is called outside any database transaction and before anything
is written: when it is down nothing is left half-made (the client gets a
503 with Retry-After). Our id is chosen first so that the gateway call can
carry it (client reference, idempotency key).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

import aiohttp

from lms.api.problems import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from lms.auth.guards import Principal
from lms.config import Settings
from lms.courses.access import load_course
from lms.db import Database, Row
from lms.enrollments import queries as enrollment_queries
from lms.enrollments.service import already_enrolled
from lms.enrollments.studying import STUDYING
from lms.money import normalize
from lms.payments import queries
from lms.payments.gateways import (
    Buyer,
    CheckoutRequest,
    Gateway,
    GatewayError,
    GatewayRefused,
    NotConfigured,
    RefundRequest,
    SubscriptionRequest,
    client_for,
)
from lms.payments.settlement import record_refund

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Payments:
    """What the use cases need: settings, the database and an HTTP session for gateway calls."""

    config: Settings
    db: Database
    http: aiohttp.ClientSession

    def gateway(self, name: str, *, field: str = "gateway") -> Gateway:
        try:
            return client_for(name, self.config.payments, self.http)
        except NotConfigured as err:
            raise ValidationFailed(
                f"{name} is not available on this platform.", errors=[{"field": field, "message": str(err)}]
            ) from err

    def unavailable(self, name: str, err: GatewayError) -> ServiceUnavailable:
        level = logging.ERROR if isinstance(err, GatewayRefused) else logging.WARNING
        log.log(level, "gateway %s failed: %s", name, err)
        retry = str(self.config.payments.gateway_retry_after_seconds)
        return ServiceUnavailable(
            f"The payment gateway ({name}) cannot be reached right now; nothing was charged. Try again shortly.",
            headers={"Retry-After": retry}, type_slug="gateway-unavailable",
        )  # fmt: skip

    def return_urls(self, **query: str) -> tuple[str, str]:
        base = self.config.http.public_base_url.rstrip("/") + self.config.payments.return_path
        return (
            f"{base}?{urlencode(query | {'result': 'success'})}",
            f"{base}?{urlencode(query | {'result': 'cancelled'})}",
        )


def buyer(principal: Principal) -> Buyer:
    return Buyer(user_id=principal.id, email=principal.email, full_name=principal.full_name)


# --- checkout ----------------------------------------------------------------


async def checkout(ctx: Payments, student: Principal, course_id: uuid.UUID, gateway_name: str) -> tuple[Row, bool]:
    """A pending payment and a pending_payment enrollment; (row, False) for the one already pending."""
    gateway = ctx.gateway(gateway_name)
    async with ctx.db.connection() as conn:
        course = await load_course(conn, student, course_id=course_id)
        if not course["is_published"]:
            raise Conflict("This course is not published; nobody can buy it yet.")
        if course["price_amount"] is None:
            raise Conflict(
                "This course is free: enroll directly.",
                enroll={"method": "POST", "href": "/api/v1/enrollments", "body": {"course_id": str(course_id)}},
            )
        existing = await enrollment_queries.find_enrollment(conn, student_id=student.id, course_id=course_id)
        if existing is not None and existing["status"] in STUDYING:
            raise already_enrolled(existing["id"])
        if await queries.has_active_subscription(conn, student.id):
            raise Conflict(
                "Your subscription covers this course: enroll directly.",
                enroll={"method": "POST", "href": "/api/v1/enrollments", "body": {"course_id": str(course_id)}},
            )
        pending = await queries.pending_course_payment(conn, user_id=student.id, course_id=course_id)
        if pending is not None:
            return pending, False
    payment_id = uuid.uuid4()
    success, cancel = ctx.return_urls(payment_id=str(payment_id))
    request = CheckoutRequest(
        payment_id=payment_id, amount=course["price_amount"], currency=course["price_currency"],
        description=course["title"], buyer=buyer(student), success_url=success, cancel_url=cancel,
    )  # fmt: skip
    try:
        made = await gateway.checkout(request)
    except GatewayError as err:
        raise ctx.unavailable(gateway_name, err) from err
    async with ctx.db.transaction() as conn:
        enrollment = await queries.hold_enrollment(conn, student_id=student.id, course_id=course_id)
        if enrollment is None:  # enrolled meanwhile (a subscription, another request)
            found = await enrollment_queries.find_enrollment(conn, student_id=student.id, course_id=course_id)
            raise already_enrolled(found["id"] if found else None)
        row = await queries.insert_payment(
            conn, id=payment_id, user_id=student.id, course_id=course_id, enrollment_id=enrollment["id"],
            amount=course["price_amount"], currency=course["price_currency"], gateway=gateway_name,
            status="pending", gateway_reference=made.reference, metadata={"redirect_url": made.redirect_url},
        )  # fmt: skip
        if row is None:  # a concurrent checkout won; its session is the one to pay
            winner = await queries.pending_course_payment(conn, user_id=student.id, course_id=course_id)
            if winner is not None:
                return winner, False
            raise Conflict("Another checkout for this course just settled; look at your payments.")
    log.info("payment %s: %s checkout %s for course %s", payment_id, gateway_name, made.reference, course_id)
    return row, True


# --- subscriptions -----------------------------------------------------------


async def subscribe(ctx: Payments, user: Principal, plan_name: str, gateway_name: str) -> tuple[Row, bool]:
    if gateway_name != "stripe":
        raise ValidationFailed(
            f"Subscriptions through {gateway_name} are not supported; use stripe.",
            errors=[{"field": "gateway", "message": "not supported for subscriptions"}],
        )
    plan = ctx.config.payments.plans.get(plan_name)
    if plan is None:
        known = ", ".join(sorted(ctx.config.payments.plans)) or "none"
        raise ValidationFailed(
            f"There is no plan {plan_name!r}.", errors=[{"field": "plan", "message": f"one of: {known}"}]
        )
    gateway = ctx.gateway(gateway_name)
    async with ctx.db.connection() as conn:
        current = await queries.open_subscription(conn, user.id)
    if current is not None:
        if current["status"] == "active":
            raise Conflict("You already have an active subscription.", subscription_id=str(current["id"]))
        return current, False
    subscription_id = uuid.uuid4()
    success, cancel = ctx.return_urls(subscription_id=str(subscription_id))
    request = SubscriptionRequest(
        subscription_id=subscription_id, plan=plan_name, amount=plan.amount, currency=plan.currency,
        interval=plan.interval, buyer=buyer(user), success_url=success, cancel_url=cancel,
    )  # fmt: skip
    try:
        made = await gateway.subscription_checkout(request)
    except GatewayError as err:
        raise ctx.unavailable(gateway_name, err) from err
    async with ctx.db.transaction() as conn:
        row = await queries.insert_subscription(
            conn, id=subscription_id, user_id=user.id, plan_name=plan_name, amount=plan.amount,
            currency=plan.currency, plan_interval=plan.interval, gateway=gateway_name, status="pending",
            gateway_checkout_id=made.reference, metadata={"redirect_url": made.redirect_url},
        )  # fmt: skip
        if row is None:
            current = await queries.open_subscription(conn, user.id)
            if current is None:
                raise Conflict("Another subscription request just settled; look at your subscriptions.")
            return current, False
    return row, True


# --- refunds -----------------------------------------------------------------


async def refund(ctx: Payments, payment_id: uuid.UUID, amount: Decimal | None, reason: str | None) -> Row:
    """Refund at the gateway, then record it; the enrollment it paid for expires. Twice: 409."""
    async with ctx.db.connection() as conn:
        payment = await queries.get_payment(conn, payment_id)
        if payment is None:
            raise NotFound("No such payment.")
        if payment["status"] == "refunded" or payment["refund_started_at"] is not None:
            raise Conflict("This payment was refunded already.")
        if payment["status"] != "completed":
            raise Conflict(f"This payment is {payment['status']}; only a completed payment can be refunded.")
        if payment["gateway_transaction_id"] is None and payment["gateway"] in ("stripe", "paymob"):
            raise Conflict("The gateway has no transaction on record for this payment; refund it at the gateway.")
        value = _refund_amount(payment, amount)
        try:
            gateway = client_for(payment["gateway"], ctx.config.payments, ctx.http)
        except NotConfigured as err:
            raise ctx.unavailable(payment["gateway"], err) from err
        if await queries.claim_refund(conn, payment_id) is None:
            raise Conflict("This payment was refunded already.")
    request = RefundRequest(
        payment_id=payment_id, reference=payment["gateway_reference"],
        transaction_id=payment["gateway_transaction_id"], amount=value, currency=payment["currency"], reason=reason,
    )  # fmt: skip
    try:
        refund_id = await gateway.refund(request)
    except GatewayError as err:
        async with ctx.db.connection() as conn:
            await queries.update_payment(conn, payment_id, refund_started_at=None)
        raise ctx.unavailable(payment["gateway"], err) from err
    async with ctx.db.transaction() as conn:
        current = await queries.lock_payment(conn, gateway=payment["gateway"], payment_id=payment_id)
        assert current is not None
        if current["status"] == "completed":
            current = await record_refund(conn, current, value)
        current = await queries.update_payment(
            conn, payment_id, metadata=current["metadata"] | {"refund": {"id": refund_id, "reason": reason}}
        )
    log.info(
        "payment %s refunded (%s %s) at %s: %s", payment_id, value, payment["currency"], payment["gateway"], refund_id
    )
    return current


def _refund_amount(payment: Row, amount: Decimal | None) -> Decimal:
    if amount is None:
        return Decimal(payment["amount"])
    try:
        value = normalize(amount, payment["currency"])
    except ValueError as err:
        raise ValidationFailed(str(err), errors=[{"field": "amount", "message": str(err)}]) from err
    if not 0 < value <= payment["amount"]:
        message = f"between 0 and {payment['amount']} {payment['currency']}"
        raise ValidationFailed(f"A refund is {message}.", errors=[{"field": "amount", "message": message}])
    return value
