"""The parts of verified gateway payloads the platform reads, as typed models.

Gateways send far more than this; unknown fields are ignored (they add
fields without notice). A payload that passes its signature but not its
model is refused like a bad signature: nothing is stored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Field(default=None, max_length=255)


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Stripe ------------------------------------------------------------------


class StripeData(Loose):
    object: dict[str, Any]


class StripeEvent(Loose):
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    created: int | None = None
    livemode: bool | None = None
    data: StripeData


class StripeCheckoutSession(Loose):
    id: str = Field(min_length=1, max_length=255)
    mode: Literal["payment", "subscription", "setup"] = "payment"
    status: str | None = Text
    payment_status: str | None = Text
    amount_total: int | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    client_reference_id: str | None = Text
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_intent: str | None = Text
    subscription: str | None = Text
    customer: str | None = Text


class StripeCharge(Loose):
    id: str = Field(min_length=1, max_length=255)
    payment_intent: str | None = Text
    amount: int = Field(ge=0)
    amount_refunded: int = Field(default=0, ge=0)
    currency: str = Field(min_length=3, max_length=3)
    refunded: bool = False


class StripePeriod(Loose):
    start: int
    end: int


class StripeInvoiceLine(Loose):
    period: StripePeriod | None = None


class StripeInvoiceLines(Loose):
    data: list[StripeInvoiceLine] = Field(default_factory=list, max_length=1000)


class StripeSubscriptionDetails(Loose):
    subscription: str | None = Text
    metadata: dict[str, str] = Field(default_factory=dict)


class StripeInvoiceParent(Loose):
    subscription_details: StripeSubscriptionDetails | None = None


class StripeInvoice(Loose):
    id: str = Field(min_length=1, max_length=255)
    amount_paid: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    # API versions before 2025-03 name the subscription here, later ones under parent.
    subscription: str | None = Text
    subscription_details: StripeSubscriptionDetails | None = None
    parent: StripeInvoiceParent | None = None
    period_start: int | None = None
    period_end: int | None = None
    lines: StripeInvoiceLines | None = None


class StripeSubscriptionItem(Loose):
    current_period_start: int | None = None
    current_period_end: int | None = None


class StripeSubscriptionItems(Loose):
    data: list[StripeSubscriptionItem] = Field(default_factory=list, max_length=100)


class StripeSubscription(Loose):
    id: str = Field(min_length=1, max_length=255)
    status: str = Field(max_length=50)
    metadata: dict[str, str] = Field(default_factory=dict)
    current_period_start: int | None = None
    current_period_end: int | None = None
    items: StripeSubscriptionItems | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None


# --- Paymob ------------------------------------------------------------------


class PaymobOrder(Loose):
    id: int


class PaymobSourceData(Loose):
    type: str | None = Text
    sub_type: str | None = Text
    pan: str | None = Text


class PaymobTransaction(Loose):
    id: int
    amount_cents: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    success: bool
    pending: bool = False
    is_refunded: bool = False
    is_voided: bool = False
    is_refund: bool = False
    order: PaymobOrder
    source_data: PaymobSourceData | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class PaymobCallback(Loose):
    type: Literal["TRANSACTION"]
    obj: PaymobTransaction


# --- MyFatoorah --------------------------------------------------------------


class MyFatoorahV1(Loose):
    """Webhook v1: ``EventType`` 1-5, ``Event`` by name, a flat ``Data`` object."""

    EventType: int = Field(ge=1, le=5)
    Event: str = Field(max_length=100)
    Data: dict[str, Any]


class MyFatoorahEventV2(Loose):
    Code: int
    Name: str = Field(max_length=100)
    Reference: str | None = Text


class MyFatoorahV2(Loose):
    Event: MyFatoorahEventV2
    Data: dict[str, Any]
