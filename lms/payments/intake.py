"""Webhook intake: verify the signature on what arrived, store the event once, hand it to a job.

Nothing is parsed into the database before the signature checks out. The
event is stored under the unique (gateway, event id) constraint; a repeat
is acknowledged and ignored (re-kicked only if its settlement has not run
yet, e.g. the first kick was lost). Event ids: Stripe's own ``id``; for
Paymob and MyFatoorah, which send none that is signed, a digest of the
signed string (a gateway's retry signs the same fields, so it repeats it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from lms.config import PaymentSettings
from lms.db import Database
from lms.jobqueue import JobQueue
from lms.payments import models, outcomes, queries
from lms.payments.gateways import configured
from lms.payments.signatures import SignatureError, verify_myfatoorah, verify_paymob, verify_stripe

log = logging.getLogger(__name__)

SETTLE_TASK = "settle_payment_event"


class WebhookRefused(Exception):
    """The request is not a verified, well-formed event of this gateway (answered 400)."""


class GatewayDisabled(Exception):
    """This gateway has no webhook secret configured (answered 404)."""


@dataclass(frozen=True)
class VerifiedEvent:
    gateway: str
    event_id: str
    event_type: str
    payload: Any


def _json(body: bytes, **kwargs: Any) -> Any:
    try:
        return json.loads(body, **kwargs)
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, absurd nesting
        raise WebhookRefused("the body is not valid JSON") from err


def _storable(payload: Any) -> Any:
    """PostgreSQL's jsonb refuses NUL characters; the stored copy has them replaced."""
    if isinstance(payload, str):
        return payload.replace("\x00", "\ufffd")
    if isinstance(payload, list):
        return [_storable(v) for v in payload]
    if isinstance(payload, dict):
        return {_storable(k): _storable(v) for k, v in payload.items()}
    return payload


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def verify(
    gateway: str,
    settings: PaymentSettings,
    body: bytes,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    now: float | None = None,
) -> VerifiedEvent:
    """The event, if its signature and its shape check out; raises WebhookRefused otherwise."""
    if gateway not in configured(settings):
        raise GatewayDisabled(gateway)
    try:
        event = _verify(gateway, settings, body, headers, query, time.time() if now is None else now)
    except SignatureError as err:
        raise WebhookRefused(str(err)) from err
    except ValidationError as err:
        raise WebhookRefused(f"the event is not a well-formed {gateway} event") from err
    if b"\\u0000" in body:
        event = VerifiedEvent(event.gateway, event.event_id, event.event_type, _storable(event.payload))
    return event


def _secret(value: Any) -> str:
    return str(value.get_secret_value())


def _verify(
    gateway: str, settings: PaymentSettings, body: bytes, headers: Mapping[str, str], query: Mapping[str, str],
    now: float,
) -> VerifiedEvent:  # fmt: skip
    if gateway == "stripe":
        verify_stripe(
            body, headers.get("Stripe-Signature"), _secret(settings.stripe_webhook_secret),
            tolerance=settings.webhook_tolerance_seconds, now=now,
        )  # fmt: skip
        payload = _json(body)
        stripe = models.StripeEvent.model_validate(payload)
        outcomes.stripe_event(stripe)  # the object must be what its type says
        return VerifiedEvent(gateway, stripe.id, stripe.type, payload)
    # Numbers keep their written form (10.000 stays 10.000) for the signed string.
    exact = _json(body, parse_float=Decimal)
    if gateway == "paymob":
        if not isinstance(exact, dict):
            raise WebhookRefused("the body is not a JSON object")
        signed = verify_paymob(exact.get("obj"), query.get("hmac"), _secret(settings.paymob_hmac_secret))
        callback = models.PaymobCallback.model_validate(exact)
        outcomes.paymob_transaction(callback.obj)
        return VerifiedEvent(gateway, f"txn:{callback.obj.id}:{_digest(signed)[:32]}", callback.type, _json(body))
    signed = verify_myfatoorah(exact, headers.get("MyFatoorah-Signature"), _secret(settings.myfatoorah_webhook_secret))
    name: str
    if isinstance(exact.get("Event"), dict):
        v2 = models.MyFatoorahV2.model_validate(exact)
        outcomes.myfatoorah_v2(v2)
        name = v2.Event.Name
    else:
        v1 = models.MyFatoorahV1.model_validate(exact)
        outcomes.myfatoorah_v1(v1)
        name = v1.Event
    return VerifiedEvent(gateway, f"{name}:{_digest(name, signed)[:40]}", name, _json(body))


async def store(db: Database, jobs: JobQueue, event: VerifiedEvent) -> bool:
    """Store the event once and kick its settlement; returns False for a repeat."""
    async with db.connection() as conn:
        row_id, new = await queries.record_event(
            conn, gateway=event.gateway, event_id=event.event_id, event_type=event.event_type, payload=event.payload
        )
        if not new and await queries.event_processed(conn, row_id):
            return False
    await kick_settlement(jobs, row_id)
    return new


async def kick_settlement(jobs: JobQueue, event_row_id: uuid.UUID) -> None:
    try:
        await jobs.enqueue(SETTLE_TASK, event_id=str(event_row_id))
    except Exception as err:  # stored: the reconciliation job settles it if no job does
        log.warning("payment event %s stored but its settlement could not be queued: %s", event_row_id, err)
