"""Payment routes: checkout, webhooks, refunds, subscriptions, revenue (README.md, "Payments")."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, PageQuery, page
from lms.api.problems import BadRequest, NotFound, PayloadTooLarge
from lms.appkeys import CONFIG, DB, METRICS
from lms.auth.guards import authenticated, current_user, require
from lms.auth.permissions import Permission
from lms.db import Row
from lms.jobqueue import JOBS
from lms.payments import intake, queries, service
from lms.payments.schemas import (
    AdminPaymentOut,
    AdminPaymentQuery,
    CheckoutIn,
    CheckoutOut,
    PaymentOut,
    RefundIn,
    RevenueQuery,
    RevenueSummary,
    SubscriptionCheckoutOut,
    SubscriptionIn,
    SubscriptionOut,
    WebhookAck,
    figures,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
TAGS = ["payments"]
HTTP = web.AppKey("payments_http", aiohttp.ClientSession)
RECORDER = web.AppKey("payments_recorder", intake.EventRecorder)


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    """An HTTP session for the gateways' APIs and the webhook event recorder (after the database and jobs)."""
    session = aiohttp.ClientSession(raise_for_status=False)
    app[HTTP] = session
    app[RECORDER] = intake.EventRecorder(app[DB], app[JOBS])
    yield
    await session.close()


def payments(request: web.Request) -> service.Payments:
    return service.Payments(config=request.app[CONFIG], db=request.app[DB], http=request.app[HTTP])


def created_or_existing(body: Any, created: bool, model: Any) -> web.Response:
    """201 for a new checkout, 200 for the pending one returned again."""
    return web.Response(
        status=201 if created else 200,
        body=model.model_validate(body).model_dump_json(by_alias=True),
        content_type="application/json",
    )


@routes.post("/api/v1/payments/checkout")
@endpoint(
    summary="Start paying for a course",
    description=(
        "Creates a pending payment at the gateway and a `pending_payment` enrollment; send the buyer to "
        "`redirect_url`. The price is the course's. While a checkout for the course is pending, the same "
        "payment is returned again (200). Free course, already enrolled or covered by a subscription: 409. "
        "A gateway that is not configured: 422. The gateway unreachable: 503 with Retry-After, nothing created."
    ),
    body=CheckoutIn,
    response=CheckoutOut,
    status=201,
    errors=[404, 409, 422, 503],
    guards=[require(Permission.ENROLL)],
    tags=TAGS,
)
async def checkout(request: web.Request, body: CheckoutIn) -> web.Response:
    row, created = await service.checkout(payments(request), current_user(request), body.course_id, body.gateway)
    return created_or_existing(row, created, CheckoutOut)


@routes.get("/api/v1/payments/mine")
@endpoint(
    summary="My payments, newest first",
    query=PageQuery,
    response=Page[PaymentOut],
    guards=[authenticated],
    tags=TAGS,
)
async def my_payments(request: web.Request, query: PageQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_user_payments(
            conn, user_id=current_user(request).id, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)


@routes.get("/api/v1/payments")
@endpoint(
    summary="Every payment (admins)",
    description="`flagged=true` lists payments an event disagreed with (amount or currency): they stay unpaid.",
    query=AdminPaymentQuery,
    response=Page[AdminPaymentOut],
    guards=[require(Permission.MANAGE_PAYMENTS)],
    tags=TAGS,
)
async def all_payments(request: web.Request, query: AdminPaymentQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_payments(
            conn, status=query.status, gateway=query.gateway, flagged=query.flagged, limit=query.limit,
            offset=query.offset,
        )  # fmt: skip
    return page(rows, total, query)


@routes.post("/api/v1/payments/{id}/refund")
@endpoint(
    summary="Refund a payment (admins)",
    description=(
        "Refunds at the gateway (all of it, or `amount`), marks the payment `refunded` with `refunded_amount`, "
        "and the enrollment it paid for becomes `expired`. A payment is refunded once: again, 409."
    ),
    body=RefundIn,
    body_required=False,
    response=AdminPaymentOut,
    errors=[404, 409, 422, 503],
    guards=[require(Permission.MANAGE_PAYMENTS)],
    tags=TAGS,
)
async def refund(request: web.Request, body: RefundIn) -> Row:
    return await service.refund(payments(request), path_uuid(request), body.amount, body.reason)


@routes.post("/api/v1/payments/subscriptions")
@endpoint(
    summary="Subscribe to a plan",
    description=(
        "Plans come from the settings (`payments.plans`). Stripe Checkout in subscription mode: send the buyer "
        "to `redirect_url`. While the subscription is active its holder enrolls in paid courses without paying. "
        "Other gateways: 422. An active subscription already: 409; a pending one is returned again (200)."
    ),
    body=SubscriptionIn,
    response=SubscriptionCheckoutOut,
    status=201,
    errors=[409, 422, 503],
    guards=[require(Permission.ENROLL)],
    tags=TAGS,
)
async def subscribe(request: web.Request, body: SubscriptionIn) -> web.Response:
    row, created = await service.subscribe(payments(request), current_user(request), body.plan, body.gateway)
    return created_or_existing(row, created, SubscriptionCheckoutOut)


@routes.get("/api/v1/payments/subscriptions/mine")
@endpoint(
    summary="My subscriptions, newest first",
    query=PageQuery,
    response=Page[SubscriptionOut],
    guards=[authenticated],
    tags=TAGS,
)
async def my_subscriptions(request: web.Request, query: PageQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_user_subscriptions(
            conn, user_id=current_user(request).id, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)


@routes.get("/api/v1/payments/revenue/summary")
@endpoint(
    summary="Revenue by currency, day and gateway",
    description=(
        "Money collected (by completion day, UTC) between `from` and `to` (both included): gross, refunded and "
        "net per currency, never converted. Admins see everything; instructors their own courses' sales."
    ),
    query=RevenueQuery,
    response=RevenueSummary,
    errors=[403, 422],
    guards=[require(Permission.VIEW_ANALYTICS)],
    tags=TAGS,
)
async def revenue_summary(request: web.Request, query: RevenueQuery) -> dict[str, Any]:
    principal = current_user(request)
    instructor = None if principal.is_admin else principal.id
    first, last, start, end = query.window()
    async with request.app[DB].connection() as conn:
        totals = await queries.revenue_by_currency(conn, start=start, end=end, instructor_id=instructor)
        days = await queries.revenue_by_day(conn, start=start, end=end, instructor_id=instructor)
        gateways = await queries.revenue_by_gateway(conn, start=start, end=end, instructor_id=instructor)
    return {
        "from": first,
        "to": last,
        "scope": "instructor" if instructor else "all",
        "totals": [figures(r) for r in totals],
        "by_day": [figures(r) | {"date": r["day"]} for r in days],
        "by_gateway": [figures(r) | {"gateway": r["gateway"]} for r in gateways],
    }


# --- webhooks ----------------------------------------------------------------


async def raw_body(request: web.Request) -> bytes:
    """The body exactly as sent, whatever pieces it arrived in, within the JSON body limit."""
    limit = request.app[CONFIG].http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", max_bytes=limit)
    body = await request.read()
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", max_bytes=limit)
    return body


async def receive(request: web.Request, gateway: str) -> dict[str, Any]:
    counted = request.app[METRICS].payments.webhooks
    try:
        body = await raw_body(request)
    except PayloadTooLarge:
        counted.labels(gateway, "too_large").inc()
        raise
    config = request.app[CONFIG]
    try:
        event = intake.verify(gateway, config.payments, body, request.headers, request.query)
    except intake.GatewayDisabled:
        counted.labels(gateway, "disabled").inc()
        raise NotFound(f"{gateway} webhooks are not enabled on this platform.") from None
    except intake.WebhookRefused as err:
        log.info("%s webhook refused: %s", gateway, err)
        counted.labels(gateway, "refused").inc()
        raise BadRequest(f"Webhook refused: {err}.", type_slug="invalid-webhook") from None
    new = await request.app[RECORDER].record(event)
    counted.labels(gateway, "accepted" if new else "duplicate").inc()
    return {"received": True, "duplicate": not new}


WEBHOOK_DOC = (
    "Verified against the gateway's documented signature scheme on the raw request before anything else "
    "({scheme}); a bad, missing or stale signature: 400 and nothing is stored. The event is stored once "
    "(a repeat is acknowledged with `duplicate: true`) and settled by a background job."
)


@routes.post("/api/v1/payments/webhooks/stripe")
@endpoint(
    summary="Stripe webhook",
    description=WEBHOOK_DOC.format(scheme="`Stripe-Signature`, v1 HMAC-SHA256 of `t.body`, tolerance in settings"),
    response=WebhookAck,
    errors=[400, 404, 413],
    tags=TAGS,
)
async def stripe_webhook(request: web.Request) -> dict[str, Any]:
    return await receive(request, "stripe")


@routes.post("/api/v1/payments/webhooks/paymob")
@endpoint(
    summary="Paymob transaction callback",
    description=WEBHOOK_DOC.format(scheme="`?hmac=`, HMAC-SHA512 of the transaction's 20 documented fields"),
    response=WebhookAck,
    errors=[400, 404, 413],
    tags=TAGS,
)
async def paymob_webhook(request: web.Request) -> dict[str, Any]:
    return await receive(request, "paymob")


@routes.post("/api/v1/payments/webhooks/myfatoorah")
@endpoint(
    summary="MyFatoorah webhook (v1 or v2)",
    description=WEBHOOK_DOC.format(scheme="`MyFatoorah-Signature`, base64 HMAC-SHA256 of the documented fields"),
    response=WebhookAck,
    errors=[400, 404, 413],
    tags=TAGS,
)
async def myfatoorah_webhook(request: web.Request) -> dict[str, Any]:
    return await receive(request, "myfatoorah")
