"""Payment tasks: settling a stored webhook event, and reconciliation on a schedule.

The work lives in :mod:`lms.payments.settlement` and
:mod:`lms.payments.reconciliation`; both are idempotent (a settled event is
not applied again, side effects are claimed once), so a redelivered or
concurrent run changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any

from taskiq import TaskiqDepends

from jobs.registry import TRANSIENT_ERRORS, TaskTable
from jobs.resources import Resources, resources
from lms.payments.reconciliation import reconcile
from lms.payments.settlement import record_failure, settle_event

log = logging.getLogger(__name__)
tasks = TaskTable()


@tasks.task("settle_payment_events", timeout_seconds=300)
async def settle_payment_events(event_ids: list[str], res: Resources = TaskiqDepends(resources)) -> list[str]:
    """Apply stored, verified webhook events (one intake batch) to their payments once; effects once.

    One event's permanent failure (a bug, a payload that no longer reads) is
    recorded on it and does not hold up the others; a transient one (the
    database, Redis) fails the task after the rest were tried, and the retry
    re-runs the batch, which changes nothing for the events already settled.
    """
    outcomes: list[str] = []
    transient: BaseException | None = None
    for event_id in event_ids:
        try:
            outcomes.append(await settle_event(res.db, res.effects, uuid.UUID(event_id), metrics=res.metrics.payments))
        except TRANSIENT_ERRORS as err:
            transient = transient or err
            outcomes.append(f"transient failure: {err}")
        except Exception as err:
            log.exception("payment event %s cannot be settled", event_id)
            await record_failure(res.db, uuid.UUID(event_id), f"settlement failed: {type(err).__name__}: {err}")
            outcomes.append("failed")
    if transient is not None:
        raise transient
    return outcomes


@tasks.task("reconcile_payments", schedule="reconcile_payments_cron", timeout_seconds=900)
async def reconcile_payments(res: Resources = TaskiqDepends(resources)) -> dict[str, Any]:
    """Settle lost webhook events and long-pending payments from the gateways' APIs."""
    counted = res.metrics.payments
    try:
        report = asdict(await reconcile(res.db, res.effects, metrics=counted))
    except BaseException:
        counted.reconciliations.labels("failed").inc()
        raise
    counted.reconciliations.labels("ok").inc()
    for kind, n in report.items():
        counted.reconciled.labels(kind).inc(n)
    return report
