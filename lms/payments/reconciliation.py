"""Reconciliation: settle what webhooks did not, from the gateways' own answers.

Two sweeps, both through the webhook's code path (:func:`settle_event` on a
stored event), so running twice, or alongside webhooks, applies each change
once and sends one receipt:

- webhook events stored but never settled (their job was lost) are settled;
- payments pending longer than ``payments.reconcile_after_seconds`` (0: all)
  are looked up at their gateway (Stripe ``GET /v1/checkout/sessions/{id}``,
  Paymob's transaction inquiry, MyFatoorah ``GetPaymentStatus``); an answer
  that settles them is stored as an event ``reconciliation:<payment>:<kind>``
  and settled.

Active subscriptions whose paid period ended without a renewal expire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from lms.db import Database
from lms.effects import Effects
from lms.metrics import PaymentMetrics
from lms.payments import queries
from lms.payments.gateways import GatewayError, NotConfigured, StatusRequest, client_for
from lms.payments.outcomes import PaymentChange
from lms.payments.settlement import RECONCILIATION_KEY, change_to_dict, settle_event

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class Report:
    events_settled: int = 0
    payments_checked: int = 0
    payments_settled: int = 0
    lookups_failed: int = 0
    subscriptions_expired: int = 0


async def reconcile(
    db: Database, effects: Effects, http: aiohttp.ClientSession | None = None, *, metrics: PaymentMetrics | None = None
) -> Report:
    config = effects.config.payments
    report = Report()
    async with db.connection() as conn:
        stale_events = await queries.unsettled_events(
            conn, older_than_seconds=config.unsettled_event_after_seconds, limit=BATCH
        )
    for event_id in stale_events:
        await settle_event(db, effects, event_id, metrics=metrics)
        report.events_settled += 1

    async with db.connection() as conn:
        pending = await queries.pending_payments(conn, older_than_seconds=config.reconcile_after_seconds, limit=BATCH)
    session = http or aiohttp.ClientSession()
    try:
        for payment in pending:
            report.payments_checked += 1
            try:
                gateway = client_for(payment["gateway"], config, session)
                change = await gateway.status(StatusRequest(payment["id"], payment["gateway_reference"]))
            except NotConfigured:
                continue
            except (GatewayError, ValidationError) as err:
                log.warning("payment %s: %s status lookup failed: %s", payment["id"], payment["gateway"], err)
                report.lookups_failed += 1
                continue
            if not isinstance(change, PaymentChange):
                continue  # still pending at the gateway
            async with db.connection() as conn:
                row_id, _ = await queries.record_event(
                    conn, gateway=payment["gateway"], event_id=f"reconciliation:{payment['id']}:{change.kind}",
                    event_type=f"reconciliation.{change.kind}", payload={RECONCILIATION_KEY: change_to_dict(change)},
                )  # fmt: skip
            await settle_event(db, effects, row_id, metrics=metrics)
            report.payments_settled += 1
    finally:
        if http is None:
            await session.close()

    async with db.connection() as conn:
        report.subscriptions_expired = await queries.expire_lapsed_subscriptions(conn)
    log.info("reconciliation: %s", report)
    return report
