"""Webhook signatures, exactly as each gateway documents them: Stripe's ``Stripe-Signature`` (``t=``, ``v1=``
HMAC-SHA256), Paymob's transaction HMAC-SHA512, MyFatoorah's ``MyFatoorah-Signature``.

Every check runs on what arrived (raw body bytes, header, query string)
before anything is stored; comparisons are constant-time. A failure raises
:class:`SignatureError` with a reason safe to show the sender.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any


class SignatureError(Exception):
    """Missing, malformed, stale or wrong signature."""


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str; bytes compare any input safely.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


# --- Stripe ------------------------------------------------------------------


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` value: HMAC-SHA256 over ``"{t}." + body`` keyed with the whole ``whsec_...`` text."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_stripe(body: bytes, header: str | None, secret: str, *, tolerance: int, now: float) -> int:
    """Check ``Stripe-Signature``; returns its timestamp.

    Only ``v1`` counts (``v0`` and unknown schemes are ignored: no downgrade);
    any of several ``v1`` values may match (a secret being rolled).
    """
    if not header:
        raise SignatureError("the Stripe-Signature header is missing")
    timestamp: str | None = None
    candidates: list[str] = []
    for element in header.split(","):
        key, sep, value = element.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("the Stripe-Signature header has no valid timestamp")
    if not candidates:
        raise SignatureError("the Stripe-Signature header has no v1 signature")
    t = int(timestamp)
    expected = stripe_signature(body, secret, t)
    if not any(_same(expected, candidate) for candidate in candidates):
        raise SignatureError("no v1 signature matches")
    if abs(now - t) > tolerance:
        raise SignatureError(f"the signature timestamp is outside the {tolerance} s tolerance")
    return t


# --- Paymob ------------------------------------------------------------------

PAYMOB_FIELDS: Sequence[str] = (
    "amount_cents", "created_at", "currency", "error_occured", "has_parent_transaction", "id",
    "integration_id", "is_3d_secure", "is_auth", "is_capture", "is_refunded", "is_standalone_payment",
    "is_voided", "order.id", "owner", "pending", "source_data.pan", "source_data.sub_type",
    "source_data.type", "success",
)  # fmt: skip


def _scalar_text(value: Any, *, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str, Decimal)):
        return str(value)
    raise SignatureError(f"{field} is not a plain value")


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def paymob_string(obj: Mapping[str, Any]) -> str:
    """The 20 fields of a transaction, concatenated in the documented order."""
    parts = []
    for field in PAYMOB_FIELDS:
        if field == "order.id" and not isinstance(obj.get("order"), Mapping):
            value = obj.get("order")  # the browser redirect carries the order id itself
        else:
            value = _lookup(obj, field)
        parts.append(_scalar_text(value, field=field))
    return "".join(parts)


def paymob_hmac(obj: Mapping[str, Any], secret: str) -> str:
    return hmac.new(secret.encode(), paymob_string(obj).encode(), hashlib.sha512).hexdigest()


def verify_paymob(obj: Any, given: str | None, secret: str) -> str:
    """Check ``?hmac=`` against the transaction; returns the signed string (it identifies the event)."""
    if not given:
        raise SignatureError("the hmac query parameter is missing")
    if not isinstance(obj, Mapping):
        raise SignatureError("the callback has no transaction object")
    signed = paymob_string(obj)
    expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha512).hexdigest()
    if not _same(expected, given.lower()):
        raise SignatureError("the hmac does not match")
    return signed


# --- MyFatoorah --------------------------------------------------------------

# v1: fields of Data left out of the signed string, per event.
MYFATOORAH_V1_EXCLUDED: Mapping[str, frozenset[str]] = {
    "RefundStatusChanged": frozenset({"GatewayReference"}),
    "SupplierStatusChanged": frozenset({"KycFeedback"}),
}
# v2: a fixed list of fields per event, in this order (not sorted).
MYFATOORAH_V2_FIELDS: Mapping[str, Sequence[str]] = {
    "PAYMENT_STATUS_CHANGED": (
        "Invoice.Id", "Invoice.Status", "Transaction.Status", "Transaction.PaymentId", "Invoice.ExternalIdentifier",
    ),
    "REFUND_STATUS_CHANGED": ("Refund.Id", "Refund.Status", "Amount.ValueInBaseCurrency", "ReferencedInvoice.Id"),
}  # fmt: skip


def myfatoorah_string(payload: Any) -> str:
    """``key=value`` pairs joined with ``,``: v1 sorted case-insensitively, v2 in its fixed order."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("Data"), Mapping):
        raise SignatureError("the event has no Data object")
    data: Mapping[str, Any] = payload["Data"]
    event = payload.get("Event")
    if isinstance(event, Mapping):  # v2
        fields = MYFATOORAH_V2_FIELDS.get(str(event.get("Name")))
        if fields is None:
            raise SignatureError(f"unsupported webhook v2 event {event.get('Name')!r}")
        return ",".join(f"{f}={_scalar_text(_lookup(data, f), field=f)}" for f in fields)
    excluded = MYFATOORAH_V1_EXCLUDED.get(str(event), frozenset())
    items = sorted(((k, v) for k, v in data.items() if k not in excluded), key=lambda kv: str(kv[0]).lower())
    return ",".join(f"{k}={_scalar_text(v, field=str(k))}" for k, v in items)


def myfatoorah_signature(signed: str, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()).decode()


def verify_myfatoorah(payload: Any, given: str | None, secret: str) -> str:
    """Check ``MyFatoorah-Signature``; returns the signed string (it identifies the event)."""
    if not given:
        raise SignatureError("the MyFatoorah-Signature header is missing")
    signed = myfatoorah_string(payload)
    if not _same(myfatoorah_signature(signed, secret), given.strip()):
        raise SignatureError("the signature does not match")
    return signed
