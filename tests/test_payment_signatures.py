"""Signature schemes, payload models and money, without servers (property tests included)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lms.config import PaymentSettings
from lms.money import Money, UnknownCurrency, exponent, format_amount, from_minor, normalize, to_minor
from lms.payments import models
from lms.payments.intake import GatewayDisabled, WebhookRefused, verify
from lms.payments.signatures import (
    SignatureError,
    myfatoorah_string,
    paymob_hmac,
    paymob_string,
    verify_myfatoorah,
    verify_paymob,
    verify_stripe,
)
from tests import fake_gateways as fakes

pytestmark = pytest.mark.no_services

# The concatenated string Paymob's HMAC documentation shows, and the transaction it comes from.
PAYMOB_VECTOR = (
    "1000002024-06-13T11:33:44.592345EGPfalsefalse1920364654097558truefalsefalsefalsetruefalse"
    "217503754302852false2346MasterCardcardtrue"
)
PAYMOB_OBJ: dict[str, Any] = {
    "amount_cents": 100000, "created_at": "2024-06-13T11:33:44.592345", "currency": "EGP", "error_occured": False,
    "has_parent_transaction": False, "id": 192036465, "integration_id": 4097558, "is_3d_secure": True,
    "is_auth": False, "is_capture": False, "is_refunded": False, "is_standalone_payment": True, "is_voided": False,
    "order": {"id": 217503754, "merchant_order_id": "not signed"}, "owner": 302852, "pending": False,
    "source_data": {"pan": "2346", "sub_type": "MasterCard", "type": "card"}, "success": True,
}  # fmt: skip

SETTINGS = PaymentSettings.model_validate(
    {
        "stripe_secret_key": fakes.STRIPE_SECRET_KEY,
        "stripe_webhook_secret": fakes.STRIPE_WEBHOOK_SECRET,
        "paymob_secret_key": fakes.PAYMOB_SECRET_KEY,
        "paymob_hmac_secret": fakes.PAYMOB_HMAC_SECRET,
        "paymob_integration_id": fakes.PAYMOB_INTEGRATION_ID,
        "myfatoorah_api_key": fakes.MYFATOORAH_API_KEY,
        "myfatoorah_webhook_secret": fakes.MYFATOORAH_WEBHOOK_SECRET,
    }
)


# --- Paymob ------------------------------------------------------------------


def test_paymob_concatenates_the_documented_example_exactly() -> None:
    assert paymob_string(PAYMOB_OBJ) == PAYMOB_VECTOR
    assert fakes.paymob_concatenated(PAYMOB_OBJ) == PAYMOB_VECTOR


def test_paymob_hmac_is_sha512_of_the_vector_and_verifies_in_any_case() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"secret", PAYMOB_VECTOR.encode(), hashlib.sha512).hexdigest()
    assert paymob_hmac(PAYMOB_OBJ, "secret") == expected
    assert verify_paymob(PAYMOB_OBJ, expected.upper(), "secret") == PAYMOB_VECTOR
    with pytest.raises(SignatureError):
        verify_paymob({**PAYMOB_OBJ, "success": False}, expected, "secret")
    with pytest.raises(SignatureError):
        verify_paymob(PAYMOB_OBJ, expected, "another secret")
    with pytest.raises(SignatureError, match="missing"):
        verify_paymob(PAYMOB_OBJ, None, "secret")


def test_paymob_browser_redirect_carries_the_order_id_itself() -> None:
    assert paymob_string({**PAYMOB_OBJ, "order": 217503754}) == PAYMOB_VECTOR


def test_paymob_refuses_a_field_that_is_not_a_plain_value() -> None:
    with pytest.raises(SignatureError, match="plain value"):
        paymob_string({**PAYMOB_OBJ, "owner": {"nested": 1}})


# --- Stripe ------------------------------------------------------------------


def stripe_header(body: bytes, secret: str = fakes.STRIPE_WEBHOOK_SECRET, at: int | None = None) -> str:
    return str(
        stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=at or int(time.time()))
    )


def test_headers_made_by_the_official_stripe_package_verify() -> None:
    body = b'{"id": "evt_1", "type": "x", "data": {"object": {}}}'
    now = time.time()
    assert verify_stripe(body, stripe_header(body), fakes.STRIPE_WEBHOOK_SECRET, tolerance=300, now=now) <= now + 1
    # And ours the other way round: the stripe package accepts what we would accept.
    stripe.WebhookSignature.verify_header(body.decode(), stripe_header(body), fakes.STRIPE_WEBHOOK_SECRET, 300)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "timestamp"),
        ("t=123", "no v1"),
        ("t=-5,v1=abc", "timestamp"),
        ("t=99999999999999999999,v1=abc", "timestamp"),
        ("t=1,v1=\u00e9\u00e9", "matches"),
    ],
)
def test_stripe_headers_without_a_timestamp_or_v1_are_refused(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_stripe(b"{}", header, "whsec_x", tolerance=300, now=1)


def test_stripe_only_counts_v1_and_the_tolerance() -> None:
    body = b"{}"
    now = 1_800_000_000
    header = stripe_header(body, at=now)
    t, v1 = header.split(",")
    with pytest.raises(SignatureError, match="no v1"):
        verify_stripe(body, f"{t},v0={v1[3:]}", fakes.STRIPE_WEBHOOK_SECRET, tolerance=300, now=now)
    assert verify_stripe(body, f"{t},v1=00,{v1}", fakes.STRIPE_WEBHOOK_SECRET, tolerance=300, now=now) == now
    with pytest.raises(SignatureError, match="tolerance"):
        verify_stripe(body, header, fakes.STRIPE_WEBHOOK_SECRET, tolerance=300, now=now + 301)
    with pytest.raises(SignatureError, match="matches"):
        verify_stripe(body + b" ", header, fakes.STRIPE_WEBHOOK_SECRET, tolerance=300, now=now)


# --- MyFatoorah --------------------------------------------------------------


def test_myfatoorah_v1_sorts_keys_case_insensitively_and_drops_the_excluded_field() -> None:
    payload = {"EventType": 2, "Event": "RefundStatusChanged",
               "Data": {"b": 1, "A": None, "GatewayReference": "x", "c": "3"}}  # fmt: skip
    assert myfatoorah_string(payload) == "A=,b=1,c=3"
    assert fakes.myfatoorah_v1_string({"b": 1, "A": None, "c": "3"}) == "A=,b=1,c=3"


def test_myfatoorah_v2_takes_its_fixed_fields_in_order() -> None:
    data = {"Invoice": {"Id": "7", "Status": "PAID", "ExternalIdentifier": None},
            "Transaction": {"Status": "SUCCESS", "PaymentId": "99"}}  # fmt: skip
    payload = {"Event": {"Code": 1, "Name": "PAYMENT_STATUS_CHANGED"}, "Data": data}
    expected = (
        "Invoice.Id=7,Invoice.Status=PAID,Transaction.Status=SUCCESS,Transaction.PaymentId=99,"
        "Invoice.ExternalIdentifier="
    )
    assert myfatoorah_string(payload) == expected
    signature = fakes.myfatoorah_sign(expected)
    assert verify_myfatoorah(payload, signature, fakes.MYFATOORAH_WEBHOOK_SECRET) == expected
    with pytest.raises(SignatureError):
        verify_myfatoorah(payload, signature, "another secret")
    with pytest.raises(SignatureError, match="unsupported"):
        myfatoorah_string({"Event": {"Name": "BALANCE_TRANSFERRED"}, "Data": {}})


# --- intake: every refusal is a WebhookRefused, never anything else ------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_unsigned_or_random_bodies_are_refused_cleanly(body: bytes) -> None:
    for gateway in ("stripe", "paymob", "myfatoorah"):
        with pytest.raises(WebhookRefused):
            verify(gateway, SETTINGS, body, {"Stripe-Signature": "t=1,v1=00", "MyFatoorah-Signature": "AA=="},
                   {"hmac": "00"})  # fmt: skip


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(obj=json_values, event_type=st.sampled_from(
    ["checkout.session.completed", "checkout.session.expired", "charge.refunded", "invoice.paid",
     "customer.subscription.updated", "customer.subscription.deleted", "anything.else"]
))  # fmt: skip
def test_a_validly_signed_stripe_event_of_any_shape_is_accepted_or_refused_never_crashes(
    obj: Any, event_type: str
) -> None:
    body = json.dumps({"id": "evt_1", "type": event_type, "data": {"object": obj}}).encode()
    try:
        event = verify("stripe", SETTINGS, body, {"Stripe-Signature": stripe_header(body)}, {})
    except WebhookRefused:
        return
    assert event.event_id == "evt_1" and event.event_type == event_type


paymob_objects = st.fixed_dictionaries(
    {"id": st.integers(), "amount_cents": st.integers(), "currency": st.text(max_size=4), "success": st.booleans(),
     "order": st.one_of(st.fixed_dictionaries({"id": st.integers()}), st.integers(), json_values)},
    optional={k: json_values for k in ("pending", "is_refunded", "created_at", "owner", "source_data", "data")},
)  # fmt: skip


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(obj=paymob_objects, kind=st.sampled_from(["TRANSACTION", "TOKEN", None]))
def test_a_validly_signed_paymob_callback_of_any_shape_is_accepted_or_refused_never_crashes(
    obj: dict[str, Any], kind: str | None
) -> None:
    try:
        signature = paymob_hmac(obj, fakes.PAYMOB_HMAC_SECRET)
    except SignatureError:
        signature = "00"
    body = json.dumps({"type": kind, "obj": obj}).encode()
    try:
        event = verify("paymob", SETTINGS, body, {}, {"hmac": signature})
    except WebhookRefused:
        return
    assert event.event_id.startswith(f"txn:{obj['id']}:")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=6), v2=st.booleans())
def test_a_validly_signed_myfatoorah_event_of_any_shape_is_accepted_or_refused_never_crashes(
    data: dict[str, Any], v2: bool
) -> None:
    if v2:
        payload: dict[str, Any] = {"Event": {"Code": 1, "Name": "PAYMENT_STATUS_CHANGED"}, "Data": data}
    else:
        payload = {"EventType": 1, "Event": "TransactionsStatusChanged", "Data": data}
    try:
        signature = fakes.myfatoorah_sign(myfatoorah_string(json.loads(json.dumps(payload), parse_float=Decimal)))
    except SignatureError:
        signature = "AA=="
    try:
        verify("myfatoorah", SETTINGS, json.dumps(payload).encode(), {"MyFatoorah-Signature": signature}, {})
    except WebhookRefused:
        return


def test_a_gateway_without_secrets_is_disabled() -> None:
    with pytest.raises(GatewayDisabled):
        verify("stripe", PaymentSettings(), b"{}", {}, {})


def test_deeply_nested_json_is_refused_not_a_recursion_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(WebhookRefused):
        verify("stripe", SETTINGS, body, {"Stripe-Signature": stripe_header(body)}, {})


@settings(max_examples=100, deadline=None)
@given(obj=json_values)
def test_payload_models_validate_or_raise_validation_error(obj: Any) -> None:
    for model in (models.StripeEvent, models.StripeCheckoutSession, models.StripeInvoice, models.StripeSubscription,
                  models.PaymobCallback, models.MyFatoorahV1, models.MyFatoorahV2):  # fmt: skip
        try:
            parsed = model.model_validate(obj)
        except ValidationError:
            continue
        assert isinstance(obj, dict) and isinstance(parsed, model)


# --- money ---------------------------------------------------------------------


def test_every_currency_gets_its_iso_4217_minor_unit() -> None:
    assert [exponent(c) for c in ("JPY", "USD", "EGP", "KWD", "BHD", "OMR", "CLF")] == [0, 2, 2, 3, 3, 3, 4]
    assert to_minor(Decimal("12.345"), "KWD") == 12345 and from_minor(12345, "KWD") == Decimal("12.345")
    assert to_minor(Decimal("5000"), "JPY") == 5000 and format_amount(Decimal("5000.0000"), "JPY") == "5000"
    assert format_amount(Decimal("49"), "USD") == "49.00" and format_amount(Decimal("1E+2"), "USD") == "100.00"
    with pytest.raises(ValueError, match="decimal place"):
        normalize(Decimal("1.5"), "JPY")
    with pytest.raises(UnknownCurrency):
        exponent("XAU")  # gold has no minor unit
    with pytest.raises(UnknownCurrency):
        exponent("ZZZ")


@given(
    currency=st.sampled_from(["JPY", "USD", "EGP", "KWD", "BHD", "OMR", "CLF", "ISK"]),
    units=st.integers(min_value=0, max_value=10**14),
)
def test_minor_units_round_trip_exactly(currency: str, units: int) -> None:
    amount = from_minor(units, currency)
    assert to_minor(amount, currency) == units
    shown = Money(amount=amount, currency=currency).model_dump()
    assert shown["amount"] == format_amount(amount, currency)
    assert Decimal(shown["amount"]) == amount and "E" not in shown["amount"]
    assert len(shown["amount"].partition(".")[2]) == exponent(currency)


@given(text=st.text(max_size=30), currency=st.text(max_size=5))
def test_money_input_is_validated_never_crashes(text: str, currency: str) -> None:
    try:
        money = Money.model_validate({"amount": text, "currency": currency})
    except ValidationError:
        return
    assert Decimal(money.model_dump()["amount"]) == Decimal(text.strip())
