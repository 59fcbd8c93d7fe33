"""Local stand-ins for Stripe, Paymob and MyFatoorah: the endpoints the platform calls, and signed webhooks.

Each fake is a small aiohttp app on a real port. It checks what a real
gateway checks (credentials, idempotency keys, required fields), keeps what
it created, and sends webhooks signed with the gateway's real scheme,
computed here independently of the platform's own verification code
(Stripe's through the official ``stripe`` package). ``down = True`` makes it
answer 503 to everything, as during an outage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe
from aiohttp import web

STRIPE_SECRET_KEY = "sk_test_fake_0123456789"
STRIPE_WEBHOOK_SECRET = "whsec_test_fake_secret_0123456789"
PAYMOB_SECRET_KEY = "egy_sk_test_fake_0123456789"
PAYMOB_PUBLIC_KEY = "egy_pk_test_fake"
PAYMOB_HMAC_SECRET = "PAYMOB_HMAC_FAKE_SECRET"
PAYMOB_INTEGRATION_ID = 4097558
MYFATOORAH_API_KEY = "mf_test_fake_api_key"
MYFATOORAH_WEBHOOK_SECRET = "mf_test_fake_webhook_secret"

_counter = itertools.count(217_503_754)


@dataclass
class Fake:
    """What all fakes share: the recorded requests and the outage switch."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    down: bool = False
    url: str = ""

    def record(self, request: web.Request, body: Any) -> None:
        self.requests.append((request.method, request.path, body))

    def calls(self, path: str) -> list[Any]:
        return [body for _, p, body in self.requests if p == path]

    @web.middleware
    async def outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return web.json_response({"error": "service unavailable"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Deliver a webhook the way a gateway does: a POST with the exact bytes."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


# --- Stripe ------------------------------------------------------------------


class FakeStripe(Fake):
    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.refunds: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.outage])
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self.get_session)
        app.router.add_post("/v1/refunds", self.create_refund)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {STRIPE_SECRET_KEY}"

    async def create_session(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.record(request, form)
        if not self._authorized(request):
            return web.json_response({"error": {"type": "authentication_error"}}, status=401)
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"error": {"message": "form-encoded bodies only"}}, status=400)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.by_idempotency_key:
            return web.json_response(self.sessions[self.by_idempotency_key[key]])
        for required in ("mode", "success_url", "cancel_url", "line_items[0][price_data][unit_amount]"):
            if required not in form:
                return web.json_response({"error": {"message": f"Missing required param: {required}"}}, status=400)
        sid = f"cs_test_{secrets.token_hex(12)}"
        metadata = {k[len("metadata[") : -1]: str(v) for k, v in form.items() if k.startswith("metadata[")}
        session = {
            "id": sid,
            "object": "checkout.session",
            "mode": form["mode"],
            "url": f"{self.url}/c/pay/{sid}",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(str(form["line_items[0][price_data][unit_amount]"])),
            "currency": str(form["line_items[0][price_data][currency]"]),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": metadata,
            "payment_intent": None,
            "subscription": None,
            "customer": None,
        }
        self.sessions[sid] = session
        if key:
            self.by_idempotency_key[key] = sid
        return web.json_response(session)

    async def get_session(self, request: web.Request) -> web.Response:
        self.record(request, None)
        if not self._authorized(request):
            return web.json_response({"error": {"type": "authentication_error"}}, status=401)
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response({"error": {"message": "No such checkout.session"}}, status=404)
        return web.json_response(session)

    async def create_refund(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.record(request, form)
        if not self._authorized(request):
            return web.json_response({"error": {"type": "authentication_error"}}, status=401)
        refund = {"id": f"re_{secrets.token_hex(8)}", "object": "refund", "status": "succeeded", **form}
        self.refunds.append(refund)
        return web.json_response(refund)

    # -- what the buyer and Stripe do --

    def pay(self, session_id: str) -> dict[str, Any]:
        """The buyer completes the payment: the session as Stripe then reports it."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid", payment_intent=f"pi_{secrets.token_hex(8)}")
        if session["mode"] == "subscription":
            session["subscription"] = f"sub_{secrets.token_hex(8)}"
            session["customer"] = f"cus_{secrets.token_hex(6)}"
        return dict(session)

    @staticmethod
    def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "id": event_id or f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }

    @staticmethod
    def signed(body: bytes, *, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None) -> dict[str, str]:
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=timestamp or int(time.time())
        )
        return {"Stripe-Signature": header}

    async def send(self, app_url: str, event: dict[str, Any], **sign: Any) -> tuple[int, Any]:
        body = json.dumps(event).encode()
        return await post(f"{app_url}/api/v1/payments/webhooks/stripe", body, self.signed(body, **sign))

    def invoice(
        self, session: dict[str, Any], subscription_id: str, *, start: int, end: int, amount: int | None = None
    ) -> dict[str, Any]:
        """A paid invoice of a subscription period (API 2025+ shape: the subscription under ``parent``)."""
        return {
            "id": f"in_{secrets.token_hex(8)}",
            "object": "invoice",
            "amount_paid": session["amount_total"] if amount is None else amount,
            "currency": session["currency"],
            "parent": {
                "subscription_details": {
                    "subscription": session["subscription"],
                    "metadata": {"subscription_id": subscription_id},
                }
            },
            "lines": {"data": [{"period": {"start": start, "end": end}}]},
        }

    @staticmethod
    def subscription(session: dict[str, Any], subscription_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": session["subscription"],
            "object": "subscription",
            "status": status,
            "metadata": {"subscription_id": subscription_id},
            **extra,
        }


# --- Paymob ------------------------------------------------------------------

PAYMOB_SIGNED_FIELDS = (
    "amount_cents", "created_at", "currency", "error_occured", "has_parent_transaction", "id",
    "integration_id", "is_3d_secure", "is_auth", "is_capture", "is_refunded", "is_standalone_payment",
    "is_voided", "order.id", "owner", "pending", "source_data.pan", "source_data.sub_type",
    "source_data.type", "success",
)  # fmt: skip


def paymob_concatenated(obj: dict[str, Any]) -> str:
    out = []
    for name in PAYMOB_SIGNED_FIELDS:
        value: Any = obj
        for part in name.split("."):
            value = value[part]
        out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
    return "".join(out)


def paymob_sign(obj: dict[str, Any], secret: str = PAYMOB_HMAC_SECRET) -> str:
    return hmac.new(secret.encode(), paymob_concatenated(obj).encode(), hashlib.sha512).hexdigest()


class FakePaymob(Fake):
    def __init__(self) -> None:
        super().__init__()
        self.intentions: dict[int, dict[str, Any]] = {}  # by order id
        self.transactions: dict[int, dict[str, Any]] = {}  # last transaction by order id
        self.refunds: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.outage])
        app.router.add_post("/v1/intention/", self.create_intention)
        app.router.add_post("/api/ecommerce/orders/transaction_inquiry", self.inquiry)
        app.router.add_post("/api/acceptance/void_refund/refund", self.refund)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {PAYMOB_SECRET_KEY}"

    async def create_intention(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.json_response({"detail": "Authentication credentials were not provided."}, status=401)
        if body.get("payment_methods") != [PAYMOB_INTEGRATION_ID]:
            return web.json_response({"detail": "Integration ID/Name does not exist in our system"}, status=404)
        order_id = next(_counter)
        intention = {
            "id": f"pi_test_{secrets.token_hex(10)}",
            "intention_order_id": order_id,
            "client_secret": f"egy_csk_test_{secrets.token_hex(10)}",
            "special_reference": body["special_reference"],
            "amount": body["amount"],
            "currency": body["currency"],
        }
        self.intentions[order_id] = intention
        return web.json_response(intention, status=201)

    async def inquiry(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.json_response({"detail": "unauthorized"}, status=401)
        txn = self.transactions.get(int(body["order_id"]))
        return web.json_response(txn or {"detail": "no transactions yet"})

    async def refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.json_response({"detail": "unauthorized"}, status=401)
        refund = {"id": next(_counter), "success": True, "is_refund": True, **body}
        self.refunds.append(refund)
        return web.json_response(refund)

    def transaction(
        self,
        order_id: int,
        *,
        success: bool,
        amount_cents: int | None = None,
        currency: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        intention = self.intentions[order_id]
        txn = {
            "id": next(_counter),
            "pending": False,
            "amount_cents": intention["amount"] if amount_cents is None else amount_cents,
            "success": success,
            "is_auth": False,
            "is_capture": False,
            "is_standalone_payment": True,
            "is_voided": False,
            "is_refunded": False,
            "is_3d_secure": True,
            "integration_id": PAYMOB_INTEGRATION_ID,
            "has_parent_transaction": False,
            "order": {"id": order_id, "merchant_order_id": intention["special_reference"]},
            "created_at": "2024-06-13T11:33:44.592345",
            "currency": currency or intention["currency"],
            "source_data": {"pan": "2346", "type": "card", "sub_type": "MasterCard"},
            "error_occured": False,
            "owner": 302852,
            "data": {"message": "Approved" if success else "Do not honour"},
        } | extra
        self.transactions[order_id] = txn
        return txn

    async def send(self, app_url: str, txn: dict[str, Any], *, hmac_value: str | None = None) -> tuple[int, Any]:
        body = json.dumps({"type": "TRANSACTION", "obj": txn}).encode()
        signature = paymob_sign(txn) if hmac_value is None else hmac_value
        return await post(f"{app_url}/api/v1/payments/webhooks/paymob?hmac={signature}", body)


# --- MyFatoorah --------------------------------------------------------------


def myfatoorah_v2_string(event_name: str, data: dict[str, Any]) -> str:
    fields = {
        "PAYMENT_STATUS_CHANGED": [
            "Invoice.Id", "Invoice.Status", "Transaction.Status", "Transaction.PaymentId", "Invoice.ExternalIdentifier",
        ],
        "REFUND_STATUS_CHANGED": ["Refund.Id", "Refund.Status", "Amount.ValueInBaseCurrency", "ReferencedInvoice.Id"],
    }[event_name]  # fmt: skip
    pairs = []
    for name in fields:
        group, key = name.split(".")
        value = data[group][key]
        pairs.append(f"{name}={'' if value is None else value}")
    return ",".join(pairs)


def myfatoorah_v1_string(data: dict[str, Any]) -> str:
    return ",".join(f"{k}={'' if v is None else v}" for k, v in sorted(data.items(), key=lambda kv: kv[0].lower()))


def myfatoorah_sign(text: str, secret: str = MYFATOORAH_WEBHOOK_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


class FakeMyFatoorah(Fake):
    def __init__(self) -> None:
        super().__init__()
        self.invoices: dict[int, dict[str, Any]] = {}
        self.refunds: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.outage])
        app.router.add_post("/v2/ExecutePayment", self.execute_payment)
        app.router.add_post("/v2/GetPaymentStatus", self.payment_status)
        app.router.add_post("/v2/MakeRefund", self.make_refund)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {MYFATOORAH_API_KEY}"

    @staticmethod
    def answer(data: Any, ok: bool = True, message: str = "") -> web.Response:
        return web.json_response({"IsSuccess": ok, "Message": message, "ValidationErrors": None, "Data": data})

    async def execute_payment(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.Response(status=401)
        if not body.get("PaymentMethodId") or not body.get("InvoiceValue"):
            return self.answer(None, ok=False, message="PaymentMethodId and InvoiceValue are required")
        invoice_id = next(_counter)
        invoice = {
            "InvoiceId": invoice_id,
            "InvoiceStatus": "Pending",
            "InvoiceValue": body["InvoiceValue"],
            "DisplayCurrency": body["DisplayCurrencyIso"],
            "CustomerReference": body["CustomerReference"],
            "InvoiceTransactions": [],
        }
        self.invoices[invoice_id] = invoice
        return self.answer(
            {"InvoiceId": invoice_id, "IsDirectPayment": False, "PaymentURL": f"{self.url}/pay/{invoice_id}",
             "CustomerReference": body["CustomerReference"], "UserDefinedField": body.get("UserDefinedField")}
        )  # fmt: skip

    async def payment_status(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.Response(status=401)
        invoice = self.invoices.get(int(body["Key"]))
        if invoice is None:
            return self.answer(None, ok=False, message="Invalid key")
        return self.answer(
            {**invoice, "InvoiceDisplayValue": f"{invoice['InvoiceValue']} {invoice['DisplayCurrency']}",
             "InvoiceDisplayCurrency": invoice["DisplayCurrency"]}
        )  # fmt: skip

    async def make_refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, body)
        if not self._authorized(request):
            return web.Response(status=401)
        refund = {"RefundId": next(_counter), "RefundReference": secrets.token_hex(6), **body}
        self.refunds.append(refund)
        return self.answer(refund)

    def pay(self, invoice_id: int) -> str:
        """The buyer pays the invoice; returns the PaymentId."""
        payment_id = str(next(_counter))
        invoice = self.invoices[invoice_id]
        invoice["InvoiceStatus"] = "Paid"
        invoice["InvoiceTransactions"].append({"TransactionStatus": "Succss", "PaymentId": payment_id})
        return payment_id

    def v2_payment_event(
        self, invoice_id: int, *, status: str = "SUCCESS", value: str | None = None, currency: str | None = None
    ) -> dict[str, Any]:
        invoice = self.invoices[invoice_id]
        paid = status == "SUCCESS"
        payment_id = invoice["InvoiceTransactions"][-1]["PaymentId"] if invoice["InvoiceTransactions"] else "0"
        return {
            "Event": {
                "Code": 1, "Name": "PAYMENT_STATUS_CHANGED", "CountryIsoCode": "KWT",
                "CreationDate": "2026-11-23T10:00:00Z", "Reference": f"WH-{secrets.token_hex(6)}",
            },
            "Data": {
                "Invoice": {"Id": str(invoice_id), "Status": "PAID" if paid else "PENDING",
                            "Reference": "2026000001", "ExternalIdentifier": invoice["CustomerReference"]},
                "Transaction": {"Id": "1", "Status": status, "PaymentId": payment_id, "PaymentMethod": "KNET"},
                "Amount": {"DisplayCurrency": currency or invoice["DisplayCurrency"],
                           "ValueInDisplayCurrency": value or invoice["InvoiceValue"],
                           "BaseCurrency": "KWD", "ValueInBaseCurrency": value or invoice["InvoiceValue"]},
            },
        }  # fmt: skip

    def v1_payment_event(self, invoice_id: int, *, status: str = "SUCCESS") -> dict[str, Any]:
        invoice = self.invoices[invoice_id]
        payment_id = invoice["InvoiceTransactions"][-1]["PaymentId"] if invoice["InvoiceTransactions"] else None
        return {
            "EventType": 1,
            "Event": "TransactionsStatusChanged",
            "DateTime": "23112026100000",
            "CountryIsoCode": "KWT",
            "Data": {
                "InvoiceId": invoice_id, "InvoiceReference": "2026000001", "CreatedDate": "23112026095900",
                "CustomerReference": invoice["CustomerReference"], "CustomerName": "Test Person",
                "CustomerMobile": None, "CustomerEmail": "buyer@example.com", "TransactionStatus": status,
                "PaymentMethod": "KNET", "UserDefinedField": None, "ReferenceId": "1", "TrackId": "1",
                "PaymentId": payment_id, "AuthorizationId": "1",
                "InvoiceValueInBaseCurrency": invoice["InvoiceValue"], "BaseCurrency": "KWD",
                "InvoiceValueInDisplayCurreny": invoice["InvoiceValue"], "DisplayCurrency": invoice["DisplayCurrency"],
                "InvoiceValueInPayCurrency": invoice["InvoiceValue"], "PayCurrency": "KWD",
            },
        }  # fmt: skip

    @staticmethod
    def signature(event: dict[str, Any]) -> str:
        if isinstance(event.get("Event"), dict):
            return myfatoorah_sign(myfatoorah_v2_string(event["Event"]["Name"], event["Data"]))
        return myfatoorah_sign(myfatoorah_v1_string(event["Data"]))

    async def send(self, app_url: str, event: dict[str, Any], *, signature: str | None = None) -> tuple[int, Any]:
        body = json.dumps(event).encode()
        sig = self.signature(event) if signature is None else signature
        return await post(f"{app_url}/api/v1/payments/webhooks/myfatoorah", body, {"MyFatoorah-Signature": sig})


@dataclass
class Gateways:
    stripe: FakeStripe
    paymob: FakePaymob
    myfatoorah: FakeMyFatoorah

    def settings(self) -> dict[str, Any]:
        """The payments settings section that points the platform at these fakes."""
        return {
            "stripe_api_base": self.stripe.url,
            "stripe_secret_key": STRIPE_SECRET_KEY,
            "stripe_webhook_secret": STRIPE_WEBHOOK_SECRET,
            "paymob_api_base": self.paymob.url,
            "paymob_secret_key": PAYMOB_SECRET_KEY,
            "paymob_public_key": PAYMOB_PUBLIC_KEY,
            "paymob_hmac_secret": PAYMOB_HMAC_SECRET,
            "paymob_integration_id": PAYMOB_INTEGRATION_ID,
            "myfatoorah_api_base": self.myfatoorah.url,
            "myfatoorah_api_key": MYFATOORAH_API_KEY,
            "myfatoorah_webhook_secret": MYFATOORAH_WEBHOOK_SECRET,
        }
