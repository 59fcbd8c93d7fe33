"""What a verified gateway event (or a status lookup) means for a payment or a subscription.

Pure functions from the payload models to :class:`PaymentChange` /
:class:`SubscriptionChange`; the settlement applies them. Payments are found
only through signed data (the whole body for Stripe, the signed fields for
Paymob and MyFatoorah), never through an unsigned field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lms.money import UnknownCurrency, to_minor
from lms.payments import models

PaymentKind = Literal["completed", "failed", "expired", "refunded"]
SubscriptionKind = Literal["checkout_completed", "checkout_expired", "period_paid", "updated", "cancelled"]


@dataclass(frozen=True)
class PaymentChange:
    kind: PaymentKind
    # Our payment id as the gateway echoes it (signed); cross-checked with the reference.
    payment_id: uuid.UUID | None = None
    # The gateway's name of the checkout (session, order, invoice): gateway_reference.
    reference: str | None = None
    # The money movement (payment intent, transaction, PaymentId).
    transaction_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    refunded_minor: int | None = None
    reason: str | None = None
    payment_method: str | None = None


@dataclass(frozen=True)
class SubscriptionChange:
    kind: SubscriptionKind
    subscription_id: uuid.UUID | None = None
    gateway_subscription_id: str | None = None
    checkout_id: str | None = None
    status: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    cancel_at_period_end: bool = False
    ended_at: datetime | None = None
    invoice_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None


Change = PaymentChange | SubscriptionChange | None


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _time(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


# --- Stripe ------------------------------------------------------------------


def stripe_session(session: models.StripeCheckoutSession, event_type: str) -> Change:
    currency = session.currency.upper() if session.currency else None
    if session.mode == "subscription":
        kinds: dict[str, SubscriptionKind] = {
            "checkout.session.completed": "checkout_completed",
            "checkout.session.expired": "checkout_expired",
        }
        kind = kinds.get(event_type)
        if kind is None:
            return None
        return SubscriptionChange(
            kind=kind,
            subscription_id=as_uuid(session.client_reference_id) or as_uuid(session.metadata.get("subscription_id")),
            gateway_subscription_id=session.subscription,
            checkout_id=session.id,
        )
    payment_id = as_uuid(session.client_reference_id)
    metadata_id = as_uuid(session.metadata.get("payment_id"))
    if payment_id is not None and metadata_id is not None and payment_id != metadata_id:
        payment_id = None  # two different claims: trust neither, fall back on the session id
    common: dict[str, Any] = {
        "payment_id": payment_id or metadata_id,
        "reference": session.id,
        "transaction_id": session.payment_intent,
        "amount_minor": session.amount_total,
        "currency": currency,
    }
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded", "lookup"):
        if session.payment_status == "paid":
            return PaymentChange(kind="completed", payment_method="card", **common)
        if event_type == "lookup" and session.status == "expired":
            return PaymentChange(kind="expired", **common)
        return None  # paid later (async methods): succeeded/failed follow
    if event_type == "checkout.session.async_payment_failed":
        return PaymentChange(kind="failed", reason="the payment method failed", **common)
    if event_type == "checkout.session.expired":
        return PaymentChange(kind="expired", **common)
    return None


def stripe_event(event: models.StripeEvent) -> Change:
    """Raises pydantic's ValidationError when the object is not what its type promises."""
    obj = event.data.object
    kind = event.type
    if kind.startswith("checkout.session."):
        return stripe_session(models.StripeCheckoutSession.model_validate(obj), kind)
    if kind == "charge.refunded":
        charge = models.StripeCharge.model_validate(obj)
        return PaymentChange(
            kind="refunded", transaction_id=charge.payment_intent, amount_minor=charge.amount,
            currency=charge.currency.upper(), refunded_minor=charge.amount_refunded or charge.amount,
        )  # fmt: skip
    if kind == "invoice.paid":
        invoice = models.StripeInvoice.model_validate(obj)
        details = invoice.parent.subscription_details if invoice.parent else None
        details = details or invoice.subscription_details
        period = invoice.lines.data[0].period if invoice.lines and invoice.lines.data else None
        return SubscriptionChange(
            kind="period_paid",
            subscription_id=as_uuid(details.metadata.get("subscription_id")) if details else None,
            gateway_subscription_id=(details.subscription if details else None) or invoice.subscription,
            period_start=_time(period.start if period else invoice.period_start),
            period_end=_time(period.end if period else invoice.period_end),
            invoice_id=invoice.id,
            amount_minor=invoice.amount_paid,
            currency=invoice.currency.upper(),
        )
    if kind in ("customer.subscription.updated", "customer.subscription.deleted", "customer.subscription.created"):
        sub = models.StripeSubscription.model_validate(obj)
        item = sub.items.data[0] if sub.items and sub.items.data else None
        return SubscriptionChange(
            kind="cancelled" if kind.endswith(".deleted") else "updated",
            subscription_id=as_uuid(sub.metadata.get("subscription_id")),
            gateway_subscription_id=sub.id,
            status=sub.status,
            period_start=_time(sub.current_period_start or (item.current_period_start if item else None)),
            period_end=_time(sub.current_period_end or (item.current_period_end if item else None)),
            cancel_at_period_end=sub.cancel_at_period_end,
            ended_at=_time(sub.ended_at or sub.canceled_at),
        )
    return None


# --- Paymob ------------------------------------------------------------------


def paymob_transaction(txn: models.PaymobTransaction) -> Change:
    """A transaction callback (or inquiry): success, failure or refund of the order it names."""
    common: dict[str, Any] = {
        "reference": str(txn.order.id),
        "transaction_id": str(txn.id),
        "amount_minor": txn.amount_cents,
        "currency": txn.currency.upper(),
        "payment_method": txn.source_data.type if txn.source_data else None,
    }
    if txn.pending:
        return None
    if txn.success and (txn.is_refunded or txn.is_refund or txn.is_voided):
        return PaymentChange(kind="refunded", refunded_minor=txn.amount_cents, **common)
    if txn.success:
        return PaymentChange(kind="completed", **common)
    message = txn.data.get("message") if isinstance(txn.data.get("message"), str) else None
    return PaymentChange(kind="failed", reason=(message or "declined")[:500], **common)


# --- MyFatoorah --------------------------------------------------------------


def _decimal_minor(value: Any, currency: str | None) -> int | None:
    if value is None or currency is None:
        return None
    try:
        return to_minor(Decimal(str(value)), currency)
    except (InvalidOperation, ValueError, UnknownCurrency):
        return None


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def myfatoorah_v1(event: models.MyFatoorahV1) -> Change:
    data = event.Data
    if event.Event == "TransactionsStatusChanged":
        status = str(data.get("TransactionStatus") or "").upper()
        currency = data.get("DisplayCurrency") or data.get("BaseCurrency")
        value = data.get("InvoiceValueInDisplayCurreny", data.get("InvoiceValueInDisplayCurrency"))
        if data.get("DisplayCurrency") is None:
            value = data.get("InvoiceValueInBaseCurrency")
        common: dict[str, Any] = {
            "payment_id": as_uuid(data.get("CustomerReference")),
            "reference": str(data["InvoiceId"]) if data.get("InvoiceId") is not None else None,
            "transaction_id": str(data["PaymentId"]) if data.get("PaymentId") else None,
            "amount_minor": _decimal_minor(value, str(currency).upper() if currency else None),
            "currency": str(currency).upper() if currency else None,
            "payment_method": str(data.get("PaymentMethod"))[:50] if data.get("PaymentMethod") else None,
        }
        if status in ("SUCCESS", "SUCCSS", "PAID"):
            return PaymentChange(kind="completed", **common)
        if status in ("FAILED", "CANCELED", "CANCELLED"):
            return PaymentChange(kind="failed", reason=f"MyFatoorah: {status.lower()}", **common)
        return None
    if event.Event == "RefundStatusChanged":
        if str(data.get("RefundStatus") or "").upper() != "REFUNDED":
            return None
        currency = data.get("BaseCurrency") or data.get("Currency")
        return PaymentChange(
            kind="refunded",
            reference=str(data["InvoiceId"]) if data.get("InvoiceId") is not None else None,
            currency=str(currency).upper() if currency else None,
            refunded_minor=_decimal_minor(data.get("Amount") or data.get("RefundAmount"), currency),
        )
    return None


def myfatoorah_v2(event: models.MyFatoorahV2) -> Change:
    data = event.Data
    if event.Event.Name == "PAYMENT_STATUS_CHANGED":
        invoice_status = str(_get(data, "Invoice.Status") or "").upper()
        txn_status = str(_get(data, "Transaction.Status") or "").upper()
        currency = _get(data, "Amount.DisplayCurrency") or _get(data, "Amount.BaseCurrency")
        value = (
            _get(data, "Amount.ValueInDisplayCurrency")
            if _get(data, "Amount.DisplayCurrency")
            else _get(data, "Amount.ValueInBaseCurrency")
        )
        invoice_id = _get(data, "Invoice.Id")
        payment_id = _get(data, "Transaction.PaymentId")
        common: dict[str, Any] = {
            "payment_id": as_uuid(_get(data, "Invoice.ExternalIdentifier")),
            "reference": str(invoice_id) if invoice_id is not None else None,
            "transaction_id": str(payment_id) if payment_id else None,
            "amount_minor": _decimal_minor(value, str(currency).upper() if currency else None),
            "currency": str(currency).upper() if currency else None,
        }
        if invoice_status == "PAID" and txn_status in ("SUCCESS", "CAPTURED", ""):
            return PaymentChange(kind="completed", **common)
        if txn_status in ("FAILED", "CANCELED", "CANCELLED"):
            return PaymentChange(kind="failed", reason=f"MyFatoorah: {txn_status.lower()}", **common)
        return None
    if event.Event.Name == "REFUND_STATUS_CHANGED":
        if str(_get(data, "Refund.Status") or "").upper() != "REFUNDED":
            return None
        invoice_id = _get(data, "ReferencedInvoice.Id")
        currency = _get(data, "Amount.BaseCurrency")
        return PaymentChange(
            kind="refunded",
            reference=str(invoice_id) if invoice_id is not None else None,
            currency=str(currency).upper() if currency else None,
            refunded_minor=_decimal_minor(_get(data, "Amount.ValueInBaseCurrency"), currency),
        )
    return None
