"""Payment tasks: settling a stored webhook event, and reconciliation on a schedule.

The work lives in :mod:`lms.payments.settlement` and
:mod:`lms.payments.reconciliation`; both are idempotent (a settled event is
not applied again, side effects are claimed once), so a redelivered or
concurrent run changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from taskiq import TaskiqDepends

from jobs.learning import EmittedEvents
from jobs.registry import TaskTable
from jobs.resources import Resources, resources
from lms.payments.reconciliation import reconcile
from lms.payments.settlement import Effects, settle_event

tasks = TaskTable()


def effects(res: Resources) -> Effects:
    return Effects(config=res.config, jobs=res.jobs, notifier=res.emitter, events=EmittedEvents(res.emitter))


@tasks.task("settle_payment_event", timeout_seconds=120)
async def settle_payment_event(event_id: str, res: Resources = TaskiqDepends(resources)) -> str:
    """Apply a stored, verified webhook event to its payment once; deliver the effects once."""
    return await settle_event(res.db, effects(res), uuid.UUID(event_id))


@tasks.task("reconcile_payments", schedule="reconcile_payments_cron", timeout_seconds=900)
async def reconcile_payments(res: Resources = TaskiqDepends(resources)) -> dict[str, Any]:
    """Settle lost webhook events and long-pending payments from the gateways' APIs."""
    return asdict(await reconcile(res.db, effects(res)))
