"""Settlement through real `lms worker` processes, and the reconciliation task called directly.

A worker is killed while it settles (blocked on the payment's row lock,
which this test holds): the message is redelivered to another worker and
the payment is applied once, with one receipt.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from jobs.broker import build_inline_broker
from jobs.resources import Resources
from jobs.tasks.payments import reconcile_payments
from lms.app import create_app
from lms.config import Settings
from lms.db import Database
from lms.payments import intake, queries
from lms.tables import email_log, payment_events, payments
from tests.builders import signed_in
from tests.conftest import LmsProcess, Servers, SmtpServer, make_config
from tests.fake_gateways import Gateways
from tests.polling import eventually
from tests.test_payments import count, enrollment_of, paid_course, payment_row


@pytest.fixture
async def task_resources(servers: Servers, smtp_server: SmtpServer, gateways: Gateways) -> AsyncIterator[Resources]:
    """What a worker hands its tasks (inline jobs: the receipts it queues are sent at once)."""
    config = make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings(), payments=gateways.settings())
    broker = build_inline_broker(config)
    await broker.startup()
    yield broker.state.resources
    await broker.shutdown()


@pytest.fixture
def inline_config(servers: Servers, smtp_server: SmtpServer, gateways: Gateways) -> Settings:
    return make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings(), payments=gateways.settings())


async def pending_checkout(client: Any, db: Database, gateways: Gateways, gateway: str) -> tuple[Any, Any, str]:
    price, currency = {"stripe": ("49.00", "USD"), "paymob": ("100.00", "EGP"), "myfatoorah": ("3.125", "OMR")}[gateway]
    course = await paid_course(db, price, currency)
    student, headers = await signed_in(client, db)
    response = await client.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": gateway}, headers=headers
    )
    assert response.status == 201, await response.text()
    return student, course, (await response.json())["payment_id"]


def pay_at_gateway(gateways: Gateways, gateway: str, payment_id: str) -> Any:
    """The buyer pays; the gateway's webhook never arrives. Returns what the webhook would have said."""
    if gateway == "stripe":
        return gateways.stripe.pay(gateways.stripe.by_idempotency_key[f"checkout-{payment_id}"])
    if gateway == "paymob":
        order_id = next(iter(gateways.paymob.intentions))
        return gateways.paymob.transaction(order_id, success=True)
    invoice_id = next(iter(gateways.myfatoorah.invoices))
    gateways.myfatoorah.pay(invoice_id)
    return invoice_id


@pytest.mark.parametrize("gateway", ["stripe", "paymob", "myfatoorah"])
async def test_reconciliation_settles_a_missed_webhook_once_however_often_it_runs(
    aiohttp_client: Any,
    inline_config: Settings,
    task_resources: Resources,
    db: Database,
    gateways: Gateways,
    smtp_server: SmtpServer,
    gateway: str,
) -> None:
    client = await aiohttp_client(create_app(inline_config))
    student, course, pid = await pending_checkout(client, db, gateways, gateway)
    first = await reconcile_payments(res=task_resources)
    assert first["payments_checked"] == 1 and first["payments_settled"] == 0  # not paid yet: still pending
    assert (await payment_row(db, pid))["status"] == "pending"

    pay_at_gateway(gateways, gateway, pid)
    reports = [await reconcile_payments(res=task_resources) for _ in range(2)]
    assert [r["payments_settled"] for r in reports] == [1, 0]
    assert (await payment_row(db, pid))["status"] == "completed"
    assert (await enrollment_of(db, student, course))["status"] == "active"  # type: ignore[index]
    smtp_server.catcher.wait_for(1)
    assert len(smtp_server.messages) == 1
    async with db.connection() as conn:
        [event] = await conn.fetch_all(select(payment_events))
    assert event["event_id"] == f"reconciliation:{pid}:completed" and event["processed_at"] is not None
    lookups = {"stripe": "/v1/checkout/sessions/", "paymob": "/api/ecommerce/orders/transaction_inquiry",
               "myfatoorah": "/v2/GetPaymentStatus"}[gateway]  # fmt: skip
    fake = getattr(gateways, gateway)
    assert any(path.startswith(lookups) for _, path, _ in fake.requests)


async def test_reconciliation_racing_the_webhook_sends_one_receipt_and_activates_once(
    aiohttp_client: Any,
    inline_config: Settings,
    task_resources: Resources,
    db: Database,
    gateways: Gateways,
    smtp_server: SmtpServer,
) -> None:
    client = await aiohttp_client(create_app(inline_config))
    _, _, pid = await pending_checkout(client, db, gateways, "stripe")
    session = pay_at_gateway(gateways, "stripe", pid)
    url = str(client.make_url("")).rstrip("/")
    event = gateways.stripe.event("checkout.session.completed", session)
    results = await asyncio.gather(
        reconcile_payments(res=task_resources),
        gateways.stripe.send(url, event),
        reconcile_payments(res=task_resources),
        gateways.stripe.send(url, event),
    )
    assert results[1][0] == 200 and results[3][0] == 200
    assert (await payment_row(db, pid))["status"] == "completed"
    smtp_server.catcher.wait_for(1)
    assert await count(db, email_log) == 1
    assert len(smtp_server.messages) == 1


async def test_reconciliation_settles_an_event_whose_job_was_lost(
    aiohttp_client: Any,
    inline_config: Settings,
    task_resources: Resources,
    db: Database,
    gateways: Gateways,
) -> None:
    client = await aiohttp_client(create_app(inline_config))
    _, _, pid = await pending_checkout(client, db, gateways, "paymob")
    txn = pay_at_gateway(gateways, "paymob", pid)
    import json

    from tests.fake_gateways import paymob_sign

    body = json.dumps({"type": "TRANSACTION", "obj": txn}).encode()
    verified = intake.verify("paymob", inline_config.payments, body, {}, {"hmac": paymob_sign(txn)})
    async with db.connection() as conn:  # stored, but no job was kicked
        await queries.record_event(
            conn, gateway="paymob", event_id=verified.event_id, event_type=verified.event_type, payload=verified.payload
        )
    gateways.paymob.down = True  # so that only the stored event can settle it
    report = await reconcile_payments(res=task_resources)
    assert report["events_settled"] == 1 and report["lookups_failed"] == 0
    assert (await payment_row(db, pid))["status"] == "completed"


async def test_subscriptions_past_their_period_expire_at_reconciliation(
    task_resources: Resources, db: Database
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from lms.tables import subscriptions
    from tests.builders import make_user

    user = await make_user(db)
    async with db.transaction() as conn:
        await conn.execute(
            insert(subscriptions).values(
                user_id=user["id"], plan_name="monthly", amount=19, currency="USD", gateway="stripe",
                status="active", end_date=datetime.now(UTC) - timedelta(minutes=1),
            )
        )  # fmt: skip
    assert (await reconcile_payments(res=task_resources))["subscriptions_expired"] == 1
    assert (await reconcile_payments(res=task_resources))["subscriptions_expired"] == 0


# --- real workers ----------------------------------------------------------------


async def lock_waiters(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetch_val("SELECT count(*) FROM pg_locks WHERE NOT granted"))


@pytest.mark.slow
async def test_a_worker_killed_mid_settlement_is_redelivered_and_the_payment_applied_once(
    aiohttp_client: Any,
    servers: Servers,
    start_lms: Callable[..., LmsProcess],
    db: Database,
    gateways: Gateways,
    smtp_server: SmtpServer,
) -> None:
    idle = 2
    settings: dict[str, Any] = {
        "jobs": {"idle_redelivery_seconds": idle},
        "smtp": smtp_server.settings(),
        "payments": gateways.settings(),
    }
    first = start_lms("worker", "--queues", "default", **settings)
    config = make_config(servers, payments=gateways.settings(), smtp=smtp_server.settings())
    client = await aiohttp_client(create_app(config))
    student, course, pid = await pending_checkout(client, db, gateways, "stripe")
    session = pay_at_gateway(gateways, "stripe", pid)

    async with db.transaction() as blocker:
        # Hold the payment's row lock: the worker's settlement waits on it, mid-transaction.
        await blocker.fetch_one(select(payments).where(payments.c.id == payments.c.id).with_for_update())
        url = str(client.make_url("")).rstrip("/")
        status, ack = await gateways.stripe.send(url, gateways.stripe.event("checkout.session.completed", session))
        assert (status, ack["duplicate"]) == (200, False)
        await eventually(lambda: lock_waiters(db), what="the worker waiting on the payment lock")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(5)
    # Its transaction died with it; nothing was applied.
    assert (await payment_row(db, pid))["status"] == "pending"

    second = start_lms("worker", **settings)

    async def settled() -> bool:
        return (await payment_row(db, pid))["status"] == "completed"

    await eventually(settled, timeout=idle * 2 + 15, what="the redelivered settlement")
    smtp_server.catcher.wait_for(1)
    assert (await enrollment_of(db, student, course))["status"] == "active"  # type: ignore[index]
    async with db.connection() as conn:
        [event] = await conn.fetch_all(select(payment_events))
        receipts = await conn.fetch_all(select(email_log))
    assert event["processed_at"] is not None and event["error"] is None
    assert [r["message_id"] for r in receipts] == [f"<payment-{pid}-completed@lms>"]
    assert len(smtp_server.messages) == 1
    assert "settle_payment_events" in second.output
