"""MyFatoorah: ExecutePayment (the invoice and its payment URL), MakeRefund, GetPaymentStatus.

``Authorization: Bearer <API key>``; answers wrap the result in
``{IsSuccess, Message, ValidationErrors, Data}``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from lms.money import format_amount, to_minor
from lms.payments.gateways import (
    Checkout,
    CheckoutRequest,
    GatewayClient,
    GatewayRefused,
    GatewayUnavailable,
    RefundRequest,
    StatusRequest,
)
from lms.payments.outcomes import Change, PaymentChange, as_uuid


class MyFatoorah(GatewayClient):
    name = "myfatoorah"

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, timeout: float, *, api_key: str, payment_method_id: int
    ) -> None:
        super().__init__(session, base_url, timeout)
        self.api_key = api_key
        self.payment_method_id = payment_method_id

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: Any = await self.call("POST", path, json=body, headers={"Authorization": f"Bearer {self.api_key}"})
        if not isinstance(answer, dict) or not answer.get("IsSuccess") or not isinstance(answer.get("Data"), dict):
            message = answer.get("Message") if isinstance(answer, dict) else None
            raise GatewayRefused(f"myfatoorah {path}: {message or 'unsuccessful'}")
        data: dict[str, Any] = answer["Data"]
        return data

    async def checkout(self, request: CheckoutRequest) -> Checkout:
        body = {
            "PaymentMethodId": self.payment_method_id,
            "InvoiceValue": format_amount(request.amount, request.currency),
            "DisplayCurrencyIso": request.currency,
            "CustomerName": request.buyer.full_name[:100],
            "CustomerEmail": request.buyer.email,
            "CustomerReference": str(request.payment_id),
            "UserDefinedField": str(request.payment_id),
            "CallBackUrl": request.success_url,
            "ErrorUrl": request.cancel_url,
            "InvoiceItems": [
                {"ItemName": request.description[:100], "Quantity": 1,
                 "UnitPrice": format_amount(request.amount, request.currency)},
            ],
        }  # fmt: skip
        data = await self._call("/v2/ExecutePayment", body)
        if not data.get("InvoiceId") or not data.get("PaymentURL"):
            raise GatewayUnavailable("myfatoorah: ExecutePayment returned no InvoiceId or PaymentURL")
        return Checkout(reference=str(data["InvoiceId"]), redirect_url=str(data["PaymentURL"]))

    async def refund(self, request: RefundRequest) -> str:
        if not request.reference:
            raise GatewayRefused("myfatoorah: this payment has no invoice to refund")
        body = {
            "Key": request.reference,
            "KeyType": "InvoiceId",
            "RefundChargeOnCustomer": False,
            "ServiceChargeOnCustomer": False,
            "Amount": format_amount(request.amount, request.currency),
            "Comment": (request.reason or "refund")[:500],
        }
        data = await self._call("/v2/MakeRefund", body)
        return str(data.get("RefundId", ""))

    async def status(self, request: StatusRequest) -> Change:
        if not request.reference:
            return None
        data = await self._call("/v2/GetPaymentStatus", {"Key": request.reference, "KeyType": "InvoiceId"})
        status = str(data.get("InvoiceStatus") or "").lower()
        transactions = [t for t in data.get("InvoiceTransactions") or [] if isinstance(t, dict)]
        paid = [t for t in transactions if str(t.get("TransactionStatus", "")).lower() in ("succss", "success")]
        currency = str(data.get("InvoiceDisplayCurrency") or data.get("DisplayCurrency") or "").upper() or None
        value = data.get("InvoiceDisplayValue") if currency else None
        amount = None
        if currency and value is not None:
            try:
                amount = to_minor(value if not isinstance(value, str) else value.split()[0], currency)
            except ValueError:
                amount = None
        common: dict[str, Any] = {
            "payment_id": as_uuid(data.get("CustomerReference")),
            "reference": str(data.get("InvoiceId") or request.reference),
            "transaction_id": str(paid[-1].get("PaymentId")) if paid and paid[-1].get("PaymentId") else None,
            "amount_minor": amount,
            "currency": currency,
        }
        if status == "paid":
            return PaymentChange(kind="completed", **common)
        if status in ("canceled", "cancelled", "expired"):
            return PaymentChange(kind="expired", **common)
        return None
