"""Webhook intake: verify the signature on what arrived, store the event once, hand it to a job.

Nothing is parsed into the database before the signature checks out. The
event is stored under the unique (gateway, event id) constraint; a repeat
is acknowledged and ignored (re-kicked only if its settlement has not run
yet, e.g. the first kick was lost). Event ids: Stripe's own ``id``; for
Paymob and MyFatoorah, which send none that is signed, a digest of the
signed string (a gateway's retry signs the same fields, so it repeats it).
"""

from __future__ import annotations

import asyncio
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

SETTLE_TASK = "settle_payment_events"


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


class EventRecorder:
    """Stores verified events and kicks their settlement, many requests' events at a time.

    Group commit: while one batch is being written, the events of the
    requests that arrive meanwhile wait and go together in the next one (one
    INSERT, one settlement job). Nothing waits for a timer: a lone event is
    written at once. Each caller learns whether its event was new.
    """

    def __init__(self, db: Database, jobs: JobQueue, max_batch: int = 50) -> None:
        self.db = db
        self.jobs = jobs
        self.max_batch = max_batch
        self._waiting: list[tuple[VerifiedEvent, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: VerifiedEvent) -> bool:
        """Store the event once and kick its settlement; False for a repeat."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                new, unsettled = await self._write(batch)
            except Exception as err:  # each request answers with the failure (e.g. the database is down)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            if unsettled:
                await kick_settlement(self.jobs, unsettled)
            for (_, future), is_new in zip(batch, new, strict=True):
                if not future.done():
                    future.set_result(is_new)

    async def _write(
        self, batch: list[tuple[VerifiedEvent, asyncio.Future[bool]]]
    ) -> tuple[list[bool], list[uuid.UUID]]:
        events = [event for event, _ in batch]
        async with self.db.connection() as conn:
            stored = await queries.record_events(
                conn, [(e.gateway, e.event_id, e.event_type, e.payload) for e in events]
            )
        new: list[bool] = []
        unsettled: list[uuid.UUID] = []
        seen: set[tuple[str, str]] = set()
        for event in events:
            key = (event.gateway, event.event_id)
            row_id, inserted, processed = stored[key]
            first = key not in seen
            seen.add(key)
            new.append(inserted and first)
            if first and not processed:
                unsettled.append(row_id)
        return new, unsettled


async def kick_settlement(jobs: JobQueue, event_ids: list[uuid.UUID]) -> None:
    try:
        await jobs.enqueue(SETTLE_TASK, event_ids=[str(i) for i in event_ids])
    except Exception as err:  # stored: the reconciliation job settles them if no job does
        log.warning("%d payment event(s) stored but their settlement could not be queued: %s", len(event_ids), err)
