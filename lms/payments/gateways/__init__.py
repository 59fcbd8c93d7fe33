"""Clients of the gateways' APIs behind one interface: checkout, subscription checkout, refund, status.

Each speaks its gateway's documented API at ``payments.<gateway>_api_base``
(tests and sandboxes point it elsewhere). Any transport failure, timeout or
5xx becomes :class:`GatewayUnavailable` (the caller answers 503 with
Retry-After); a 4xx refusal becomes :class:`GatewayRefused`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from lms.config import PaymentSettings
from lms.payments.outcomes import Change

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """Base for gateway call failures."""


class GatewayUnavailable(GatewayError):
    """Unreachable, too slow, or failing on its side (5xx): worth trying again later."""


class GatewayRefused(GatewayError):
    """The gateway answered the request with a refusal (4xx)."""


class NotConfigured(GatewayError):
    """This gateway has no credentials in the settings."""


@dataclass(frozen=True)
class Buyer:
    user_id: uuid.UUID
    email: str
    full_name: str


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: uuid.UUID
    amount: Decimal
    currency: str
    description: str
    buyer: Buyer
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class Checkout:
    reference: str  # stored as gateway_reference
    redirect_url: str


@dataclass(frozen=True)
class SubscriptionRequest:
    subscription_id: uuid.UUID
    plan: str
    amount: Decimal
    currency: str
    interval: str
    buyer: Buyer
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class RefundRequest:
    payment_id: uuid.UUID
    reference: str | None
    transaction_id: str | None
    amount: Decimal
    currency: str
    reason: str | None


@dataclass(frozen=True)
class StatusRequest:
    payment_id: uuid.UUID
    reference: str | None


class Gateway(Protocol):
    name: str

    async def checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def subscription_checkout(self, request: SubscriptionRequest) -> Checkout: ...

    async def refund(self, request: RefundRequest) -> str: ...

    async def status(self, request: StatusRequest) -> Change: ...


class SubscriptionsNotSupported(GatewayError):
    """Recurring billing is offered through Stripe only."""


class GatewayClient:
    """What every gateway client shares: the session, the base URL, error translation."""

    name = ""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            async with self.session.request(method, url, timeout=self.timeout, **kwargs) as response:
                text = await response.text()
                if response.status >= 500 or response.status == 429:
                    raise GatewayUnavailable(f"{self.name} answered {response.status} to {method} {path}")
                if response.status >= 400:
                    raise GatewayRefused(f"{self.name} refused {method} {path} ({response.status}): {text[:300]}")
                try:
                    return await response.json(content_type=None)
                except ValueError as err:
                    raise GatewayUnavailable(f"{self.name} answered {method} {path} with no JSON") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise GatewayUnavailable(f"{self.name} unreachable ({method} {path}): {err or type(err).__name__}") from err

    async def subscription_checkout(self, request: SubscriptionRequest) -> Checkout:
        raise SubscriptionsNotSupported(f"{self.name} subscriptions are not supported; use Stripe")


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def configured(settings: PaymentSettings) -> frozenset[str]:
    """Gateways whose credentials are present (checkout and webhooks need them)."""
    names = set()
    if settings.stripe_secret_key and settings.stripe_webhook_secret:
        names.add("stripe")
    if settings.paymob_secret_key and settings.paymob_hmac_secret and settings.paymob_integration_id:
        names.add("paymob")
    if settings.myfatoorah_api_key and settings.myfatoorah_webhook_secret:
        names.add("myfatoorah")
    return frozenset(names)


def client_for(name: str, settings: PaymentSettings, session: aiohttp.ClientSession) -> Gateway:
    """The client of one gateway; :class:`NotConfigured` when its credentials are missing."""
    from lms.payments.gateways.myfatoorah import MyFatoorah
    from lms.payments.gateways.paymob import Paymob
    from lms.payments.gateways.stripe import Stripe

    if name not in configured(settings):
        raise NotConfigured(f"{name} is not configured on this platform")
    timeout = settings.gateway_timeout_seconds
    if name == "stripe":
        return Stripe(session, settings.stripe_api_base, timeout, secret_key=_secret(settings.stripe_secret_key) or "")
    if name == "paymob":
        return Paymob(
            session, settings.paymob_api_base, timeout, secret_key=_secret(settings.paymob_secret_key) or "",
            public_key=settings.paymob_public_key or "", integration_id=settings.paymob_integration_id or 0,
        )  # fmt: skip
    return MyFatoorah(
        session, settings.myfatoorah_api_base, timeout, api_key=_secret(settings.myfatoorah_api_key) or "",
        payment_method_id=settings.myfatoorah_payment_method_id,
    )  # fmt: skip
