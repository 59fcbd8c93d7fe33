"""Payments as the API takes and shows them. Money is ``{"amount": "<decimal>", "currency": "XXX"}``."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lms.api.pagination import PageQuery
from lms.money import MAX_AMOUNT, Money, money
from lms.tables import GatewayName, PaymentStatus, SubscriptionStatus


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: uuid.UUID
    gateway: GatewayName


class CheckoutOut(BaseModel):
    payment_id: uuid.UUID
    status: PaymentStatus
    redirect_url: str | None
    amount: Money
    gateway: GatewayName

    @model_validator(mode="before")
    @classmethod
    def from_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and "currency" in data:
            return {
                "payment_id": data["id"],
                "status": data["status"],
                "redirect_url": (data.get("metadata") or {}).get("redirect_url"),
                "amount": money(data["amount"], data["currency"]),
                "gateway": data["gateway"],
            }
        return data


class PaymentOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    course_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    enrollment_id: uuid.UUID | None
    amount: Money
    currency: str
    gateway: GatewayName
    status: PaymentStatus
    gateway_reference: str | None
    failure_reason: str | None
    refunded_amount: Money | None
    refunded_at: datetime | None
    created_at: datetime
    completed_at: datetime | None

    @model_validator(mode="before")
    @classmethod
    def from_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("amount"), (dict, Money)):
            data = {
                **data,
                "amount": money(data["amount"], data["currency"]),
                "refunded_amount": money(data.get("refunded_amount"), data["currency"]),
            }
        return data


class AdminPaymentOut(PaymentOut):
    """What admins see besides: why a payment was flagged, and the gateway's transaction."""

    flagged_reason: str | None
    gateway_transaction_id: str | None


class AdminPaymentQuery(PageQuery):
    status: PaymentStatus | None = None
    gateway: GatewayName | None = None
    flagged: bool | None = Field(default=None, description="true: only payments flagged for review (amount mismatch).")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal | None = Field(
        default=None,
        gt=0,
        le=MAX_AMOUNT,
        description="A partial refund, in the payment's currency; absent: the whole amount.",
    )
    reason: str | None = Field(default=None, max_length=500)


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=100)
    gateway: GatewayName


class SubscriptionCheckoutOut(BaseModel):
    subscription_id: uuid.UUID
    status: SubscriptionStatus
    plan: str
    amount: Money
    interval: str
    redirect_url: str | None

    @model_validator(mode="before")
    @classmethod
    def from_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and "plan_name" in data:
            return {
                "subscription_id": data["id"],
                "status": data["status"],
                "plan": data["plan_name"],
                "amount": money(data["amount"], data["currency"]),
                "interval": data["plan_interval"],
                "redirect_url": (data.get("metadata") or {}).get("redirect_url"),
            }
        return data


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    plan: str
    amount: Money
    interval: str
    gateway: GatewayName
    status: SubscriptionStatus
    start_date: datetime | None
    end_date: datetime | None
    cancelled_at: datetime | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def from_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and "plan_name" in data:
            return {
                **data,
                "plan": data["plan_name"],
                "interval": data["plan_interval"],
                "amount": money(data["amount"], data["currency"]),
            }
        return data


class RevenueQuery(BaseModel):
    """Dates are UTC days, both included; by default the last 30 days."""

    model_config = ConfigDict(populate_by_name=True)
    from_: date | None = Field(default=None, alias="from", description="First day (UTC), default 29 days before `to`.")
    to: date | None = Field(default=None, description="Last day (UTC) included, default today.")

    @model_validator(mode="after")
    def ordered(self) -> RevenueQuery:
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("`from` must not be after `to`")
        if self.from_ is not None and self.to is not None and (self.to - self.from_).days > 3660:
            raise ValueError("at most ten years at a time")
        return self

    def window(self) -> tuple[date, date, datetime, datetime]:
        last = self.to or datetime.now(UTC).date()
        first = self.from_ or last - timedelta(days=29)
        start = datetime.combine(first, time.min, UTC)
        end = datetime.combine(last + timedelta(days=1), time.min, UTC)
        return first, last, start, end


class RevenueFigures(BaseModel):
    gross: Money
    refunded: Money
    net: Money
    payments: int


class RevenueByCurrency(RevenueFigures):
    currency: str


class RevenueByDay(RevenueFigures):
    date: date
    currency: str


class RevenueByGateway(RevenueFigures):
    gateway: GatewayName
    currency: str


class RevenueSummary(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)
    from_: date = Field(alias="from")
    to: date
    scope: Literal["all", "instructor"]
    totals: list[RevenueByCurrency]
    by_day: list[RevenueByDay]
    by_gateway: list[RevenueByGateway]


def figures(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"]
    return {
        "currency": currency,
        "gross": money(row["gross"], currency),
        "refunded": money(row["refunded"], currency),
        "net": money(row["net"], currency),
        "payments": int(row["payments"]),
    }


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="True when this event was received before (it is applied once).")
