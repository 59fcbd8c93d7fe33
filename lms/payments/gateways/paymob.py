"""Paymob: the Intention API (unified checkout), refunds, transaction inquiry.

``Authorization: Token <secret key>``. The intention's Paymob order id is
what transaction callbacks name (``obj.order.id``, a signed field).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

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
)
from lms.payments.outcomes import Change, paymob_transaction


class Paymob(GatewayClient):
    name = "paymob"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout: float,
        *,
        secret_key: str,
        public_key: str,
        integration_id: int,
    ) -> None:
        super().__init__(session, base_url, timeout)
        self.secret_key = secret_key
        self.public_key = public_key
        self.integration_id = integration_id

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.secret_key}"}

    async def checkout(self, request: CheckoutRequest) -> Checkout:
        first, _, last = request.buyer.full_name.partition(" ")
        cents = to_minor(request.amount, request.currency)
        body = {
            "amount": cents,
            "currency": request.currency,
            "payment_methods": [self.integration_id],
            "items": [{"name": request.description[:50], "amount": cents, "quantity": 1}],
            "billing_data": {
                "first_name": first or "-", "last_name": last or "-", "email": request.buyer.email,
                "phone_number": "NA", "country": "NA", "city": "NA", "street": "NA", "building": "NA",
                "floor": "NA", "apartment": "NA",
            },
            "special_reference": str(request.payment_id),
            "redirection_url": request.success_url,
        }  # fmt: skip
        answer: Any = await self.call("POST", "/v1/intention/", json=body, headers=self._headers())
        if not isinstance(answer, dict) or not answer.get("client_secret") or not answer.get("intention_order_id"):
            raise GatewayUnavailable("paymob: the intention has no client_secret or order id")
        query = urlencode({"publicKey": self.public_key, "clientSecret": answer["client_secret"]})
        return Checkout(
            reference=str(answer["intention_order_id"]), redirect_url=f"{self.base_url}/unifiedcheckout/?{query}"
        )

    async def refund(self, request: RefundRequest) -> str:
        if not request.transaction_id:
            raise GatewayRefused("paymob: this payment has no transaction to refund")
        body = {"transaction_id": request.transaction_id, "amount_cents": to_minor(request.amount, request.currency)}
        answer: Any = await self.call("POST", "/api/acceptance/void_refund/refund", json=body, headers=self._headers())
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""

    async def status(self, request: StatusRequest) -> Change:
        if not request.reference:
            return None
        answer: Any = await self.call(
            "POST", "/api/ecommerce/orders/transaction_inquiry", json={"order_id": request.reference},
            headers=self._headers(),
        )  # fmt: skip
        if not isinstance(answer, dict) or "id" not in answer:
            return None  # no transaction on the order yet
        return paymob_transaction(models.PaymobTransaction.model_validate(answer))
