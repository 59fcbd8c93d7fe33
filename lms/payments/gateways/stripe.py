"""Stripe: Checkout Sessions (one-off and subscription), refunds, session lookup.

Form-encoded requests with ``Authorization: Bearer <secret key>`` and an
``Idempotency-Key`` derived from our id, so a retried call creates nothing twice.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from lms.money import to_minor
from lms.payments import models
from lms.payments.gateways import (
    Checkout,
    CheckoutRequest,
    GatewayClient,
    GatewayRefused,
    GatewayUnavailable,
    RefundRequest,
    StatusRequest,
    SubscriptionRequest,
)
from lms.payments.outcomes import Change, stripe_session


class Stripe(GatewayClient):
    name = "stripe"

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float, *, secret_key: str) -> None:
        super().__init__(session, base_url, timeout)
        self.secret_key = secret_key

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def _session(self, form: list[tuple[str, str]], key: str) -> Checkout:
        body = await self.call("POST", "/v1/checkout/sessions", data=form, headers=self._headers(key))
        if not isinstance(body, dict) or not body.get("id") or not body.get("url"):
            raise GatewayUnavailable("stripe: the checkout session has no id or url")
        return Checkout(reference=str(body["id"]), redirect_url=str(body["url"]))

    async def checkout(self, request: CheckoutRequest) -> Checkout:
        pid = str(request.payment_id)
        form = [
            ("mode", "payment"),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", request.currency.lower()),
            ("line_items[0][price_data][unit_amount]", str(to_minor(request.amount, request.currency))),
            ("line_items[0][price_data][product_data][name]", request.description[:250]),
            ("client_reference_id", pid),
            ("metadata[payment_id]", pid),
            ("payment_intent_data[metadata][payment_id]", pid),
            ("customer_email", request.buyer.email),
            ("success_url", request.success_url),
            ("cancel_url", request.cancel_url),
        ]
        return await self._session(form, f"checkout-{pid}")

    async def subscription_checkout(self, request: SubscriptionRequest) -> Checkout:
        sid = str(request.subscription_id)
        form = [
            ("mode", "subscription"),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", request.currency.lower()),
            ("line_items[0][price_data][unit_amount]", str(to_minor(request.amount, request.currency))),
            ("line_items[0][price_data][recurring][interval]", request.interval),
            ("line_items[0][price_data][product_data][name]", request.plan[:250]),
            ("client_reference_id", sid),
            ("metadata[subscription_id]", sid),
            ("subscription_data[metadata][subscription_id]", sid),
            ("customer_email", request.buyer.email),
            ("success_url", request.success_url),
            ("cancel_url", request.cancel_url),
        ]
        return await self._session(form, f"subscription-{sid}")

    async def refund(self, request: RefundRequest) -> str:
        if not request.transaction_id:
            raise GatewayRefused("stripe: this payment has no payment intent to refund")
        form = [
            ("payment_intent", request.transaction_id),
            ("amount", str(to_minor(request.amount, request.currency))),
            ("reason", "requested_by_customer"),
            ("metadata[payment_id]", str(request.payment_id)),
        ]
        if request.reason:
            form.append(("metadata[reason]", request.reason[:500]))
        body = await self.call("POST", "/v1/refunds", data=form, headers=self._headers(f"refund-{request.payment_id}"))
        return str(body.get("id", "")) if isinstance(body, dict) else ""

    async def status(self, request: StatusRequest) -> Change:
        if not request.reference:
            return None
        body: Any = await self.call("GET", f"/v1/checkout/sessions/{request.reference}", headers=self._headers())
        return stripe_session(models.StripeCheckoutSession.model_validate(body), "lookup")
