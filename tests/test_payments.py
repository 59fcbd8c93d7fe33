"""Payments through the real app: checkout at fake gateways, signed webhooks, settlement, refunds.

Two app instances share PostgreSQL and Redis: checkout goes to one, the
gateway's webhook to the other, the buyer's device listens on the first.
Jobs run inline (in the process that enqueues them), mailing to a real SMTP
server; tests/test_payments_workers.py drives real worker processes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from lms.app import create_app
from lms.config import Settings
from lms.db import Database, Row
from lms.tables import email_log, enrollments, payment_events, payments
from tests.builders import bearer, login, make_course, make_enrollment, make_user, signed_in
from tests.conftest import Instance, LiveClient, Servers, SmtpServer, make_config
from tests.fake_gateways import Gateways, paymob_sign


@pytest.fixture
def pay_config(servers: Servers, smtp_server: SmtpServer, gateways: Gateways) -> Settings:
    return make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings(), payments=gateways.settings())


@pytest.fixture
async def two(aiohttp_client: Any, pay_config: Settings) -> list[Instance]:
    made = []
    for _ in range(2):
        app = create_app(pay_config)
        made.append(Instance(app, await aiohttp_client(app)))
    return made


async def paid_course(db: Database, price: str = "49.00", currency: str = "USD", **extra: Any) -> Row:
    instructor = extra.pop("instructor", None) or await make_user(db, role="instructor")
    return await make_course(
        db, instructor, is_published=True, price_amount=Decimal(price), price_currency=currency, lessons=2, **extra
    )


async def payment_row(db: Database, payment_id: str) -> Row:
    async with db.connection() as conn:
        row = await conn.fetch_one(select(payments).where(payments.c.id == uuid.UUID(payment_id)))
    assert row is not None
    return row


async def enrollment_of(db: Database, student: Row, course: Row) -> Row | None:
    async with db.connection() as conn:
        return await conn.fetch_one(
            select(enrollments).where(
                enrollments.c.student_id == student["id"], enrollments.c.course_id == course["id"]
            )
        )


async def count(db: Database, table: Any, *where: Any) -> int:
    async with db.connection() as conn:
        return int(await conn.fetch_val(select(func.count()).select_from(table).where(*where)))


async def checkout(instance: Instance, headers: dict[str, str], course: Row, gateway: str) -> dict[str, Any]:
    response = await instance.http.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": gateway}, headers=headers
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def device(live: Any, instance: Instance, email: str) -> LiveClient:
    tokens = await login(instance.http, email)
    client: LiveClient = await live().connect(instance.url, tokens["access_token"])
    return client


# --- the whole flow, per gateway, across two instances ------------------------


async def test_stripe_checkout_on_one_instance_and_webhook_on_the_other_activate_the_enrollment_once(
    two: list[Instance], db: Database, gateways: Gateways, smtp_server: SmtpServer, live: Any
) -> None:
    a, b = two
    course = await paid_course(db)
    student, headers = await signed_in(a.http, db)
    phone = await device(live, a, student["email"])

    started = await checkout(a, headers, course, "stripe")
    assert started["status"] == "pending" and started["amount"] == {"amount": "49.00", "currency": "USD"}
    [form] = gateways.stripe.calls("/v1/checkout/sessions")
    pid = started["payment_id"]
    assert form["mode"] == "payment" and form["client_reference_id"] == pid and form["metadata[payment_id]"] == pid
    assert (
        form["line_items[0][price_data][unit_amount]"] == "4900"
        and form["line_items[0][price_data][currency]"] == "usd"
    )
    assert form["success_url"].startswith("http://127.0.0.1:8000/payments/return?payment_id=" + pid)
    assert f"checkout-{pid}" in gateways.stripe.by_idempotency_key
    session_id = gateways.stripe.by_idempotency_key[f"checkout-{pid}"]
    assert started["redirect_url"] == gateways.stripe.sessions[session_id]["url"]
    assert (await payment_row(db, pid))["gateway_reference"] == session_id
    assert (await enrollment_of(db, student, course))["status"] == "pending_payment"  # type: ignore[index]

    event = gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(session_id))
    status, ack = await gateways.stripe.send(b.url, event)
    assert (status, ack) == (200, {"received": True, "duplicate": False})

    payment = await payment_row(db, pid)
    assert payment["status"] == "completed" and payment["gateway_transaction_id"].startswith("pi_")
    enrollment = await enrollment_of(db, student, course)
    assert enrollment is not None and enrollment["status"] == "active" and enrollment["total_lessons_count"] == 2
    first = await phone.next("notification")
    second = await phone.next("notification")
    assert first["type"] == "payment_completed" and first["data"]["payment_id"] == pid
    assert first["data"]["amount"] == {"amount": "49.00", "currency": "USD"}
    assert second["type"] == "enrollment_activated" and second["data"]["enrollment_id"] == str(enrollment["id"])
    [receipt] = smtp_server.catcher.wait_for(1)
    assert "Payment received: 49.00 USD" in receipt.message["Subject"]
    assert receipt.rcpt_tos == [student["email"]]

    # The gateway retries: acknowledged, applied once.
    for instance in (a, b):
        status, ack = await gateways.stripe.send(instance.url, event)
        assert (status, ack) == (200, {"received": True, "duplicate": True})
    assert await count(db, payment_events) == 1
    assert await count(db, email_log, email_log.c.template == "payment_confirmation") == 1
    assert len(smtp_server.messages) == 1

    mine = await (await b.http.get("/api/v1/payments/mine", headers=headers)).json()
    assert mine["total"] == 1 and mine["items"][0]["status"] == "completed"
    assert mine["items"][0]["amount"] == {"amount": "49.00", "currency": "USD"}


async def test_paymob_checkout_and_signed_transaction_callback_in_egp(
    two: list[Instance], db: Database, gateways: Gateways, smtp_server: SmtpServer
) -> None:
    a, b = two
    course = await paid_course(db, "750.50", "EGP")
    student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "paymob")
    [intention] = gateways.paymob.calls("/v1/intention/")
    assert intention["amount"] == 75050 and intention["currency"] == "EGP"
    assert intention["special_reference"] == started["payment_id"]
    order_id = next(iter(gateways.paymob.intentions))
    assert started["redirect_url"].startswith(f"{gateways.paymob.url}/unifiedcheckout/?publicKey=")
    assert (await payment_row(db, started["payment_id"]))["gateway_reference"] == str(order_id)

    txn = gateways.paymob.transaction(order_id, success=True)
    status, ack = await gateways.paymob.send(b.url, txn)
    assert (status, ack["duplicate"]) == (200, False)
    payment = await payment_row(db, started["payment_id"])
    assert payment["status"] == "completed" and payment["gateway_transaction_id"] == str(txn["id"])
    assert (await enrollment_of(db, student, course))["status"] == "active"  # type: ignore[index]
    smtp_server.catcher.wait_for(1)
    assert (await gateways.paymob.send(a.url, txn))[1]["duplicate"] is True
    assert await count(db, email_log) == 1


async def test_myfatoorah_v2_checkout_in_kuwaiti_dinars_keeps_the_fils(
    two: list[Instance], db: Database, gateways: Gateways, smtp_server: SmtpServer
) -> None:
    a, b = two
    course = await paid_course(db, "12.345", "KWD")
    _student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "myfatoorah")
    assert started["amount"] == {"amount": "12.345", "currency": "KWD"}
    [execute] = gateways.myfatoorah.calls("/v2/ExecutePayment")
    assert execute["InvoiceValue"] == "12.345" and execute["DisplayCurrencyIso"] == "KWD"
    assert execute["CustomerReference"] == started["payment_id"]
    invoice_id = next(iter(gateways.myfatoorah.invoices))
    assert started["redirect_url"] == f"{gateways.myfatoorah.url}/pay/{invoice_id}"

    gateways.myfatoorah.pay(invoice_id)
    event = gateways.myfatoorah.v2_payment_event(invoice_id)
    status, ack = await gateways.myfatoorah.send(b.url, event)
    assert (status, ack["duplicate"]) == (200, False)
    payment = await payment_row(db, started["payment_id"])
    assert payment["status"] == "completed" and payment["amount"] == Decimal("12.345")
    [receipt] = smtp_server.catcher.wait_for(1)
    assert "12.345 KWD" in receipt.message["Subject"]
    # MyFatoorah retries a webhook up to four times: each one is a repeat.
    for _ in range(3):
        assert (await gateways.myfatoorah.send(a.url, event))[1]["duplicate"] is True
    course_body = await (await a.http.get(f"/api/v1/courses/{course['id']}")).json()
    assert course_body["price"] == {"amount": "12.345", "currency": "KWD"}


async def test_myfatoorah_v1_transaction_status_changed_settles_too(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    course = await paid_course(db, "5.500", "BHD")
    _student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "myfatoorah")
    invoice_id = next(iter(gateways.myfatoorah.invoices))
    gateways.myfatoorah.pay(invoice_id)
    status, _ = await gateways.myfatoorah.send(b.url, gateways.myfatoorah.v1_payment_event(invoice_id))
    assert status == 200
    assert (await payment_row(db, started["payment_id"]))["status"] == "completed"


# --- order of arrival, and events that say something else ----------------------


async def test_events_arriving_out_of_order_settle_as_the_money_went(
    two: list[Instance], db: Database, gateways: Gateways, live: Any
) -> None:
    a, b = two
    course = await paid_course(db)
    student, headers = await signed_in(a.http, db)
    phone = await device(live, a, student["email"])
    started = await checkout(a, headers, course, "stripe")
    session_id = gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"]
    paid = gateways.stripe.pay(session_id)
    completed = gateways.stripe.event("checkout.session.completed", paid)
    failed = gateways.stripe.event("checkout.session.async_payment_failed", {**paid, "payment_status": "unpaid"})
    expired = gateways.stripe.event("checkout.session.expired", {**paid, "status": "expired"})

    assert (await gateways.stripe.send(b.url, completed))[0] == 200
    assert (await gateways.stripe.send(a.url, failed))[0] == 200
    assert (await gateways.stripe.send(b.url, expired))[0] == 200
    payment = await payment_row(db, started["payment_id"])
    assert payment["status"] == "completed" and payment["failure_reason"] is None
    assert (await enrollment_of(db, student, course))["status"] == "active"  # type: ignore[index]
    assert [(await phone.next("notification"))["type"] for _ in range(2)] == [
        "payment_completed", "enrollment_activated",
    ]  # fmt: skip
    async with db.connection() as conn:
        notes = await conn.fetch_all(select(payment_events.c.event_type, payment_events.c.error))
    assert {n["event_type"]: n["error"] for n in notes} == {
        "checkout.session.completed": None,
        "checkout.session.async_payment_failed": "already completed",
        "checkout.session.expired": "already completed",
    }
    # One receipt whatever else arrived.
    assert await count(db, email_log) == 1


async def test_a_failure_then_a_success_on_the_same_order_completes_it(
    two: list[Instance], db: Database, gateways: Gateways, live: Any
) -> None:
    a, b = two
    course = await paid_course(db, "100.00", "EGP")
    student, headers = await signed_in(a.http, db)
    phone = await device(live, a, student["email"])
    started = await checkout(a, headers, course, "paymob")
    order_id = next(iter(gateways.paymob.intentions))
    assert (await gateways.paymob.send(b.url, gateways.paymob.transaction(order_id, success=False)))[0] == 200
    failed = await payment_row(db, started["payment_id"])
    assert failed["status"] == "failed" and failed["failure_reason"] == "Do not honour"
    note = await phone.next("notification")
    assert note["type"] == "payment_failed" and note["data"]["payment_id"] == started["payment_id"]
    assert (await gateways.paymob.send(a.url, gateways.paymob.transaction(order_id, success=True)))[0] == 200
    assert (await payment_row(db, started["payment_id"]))["status"] == "completed"
    assert (await phone.next("notification"))["type"] == "payment_completed"


async def test_an_amount_that_differs_leaves_the_payment_unpaid_and_flags_it_for_admins(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    course = await paid_course(db, "100.00", "EGP")
    student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "paymob")
    order_id = next(iter(gateways.paymob.intentions))
    cheap = gateways.paymob.transaction(order_id, success=True, amount_cents=100)
    assert (await gateways.paymob.send(b.url, cheap))[0] == 200
    payment = await payment_row(db, started["payment_id"])
    assert payment["status"] == "pending" and "amount mismatch" in payment["flagged_reason"]
    assert (await enrollment_of(db, student, course))["status"] == "pending_payment"  # type: ignore[index]
    other_currency = gateways.paymob.transaction(order_id, success=True, currency="USD")
    assert (await gateways.paymob.send(b.url, other_currency))[0] == 200
    assert (await payment_row(db, started["payment_id"]))["status"] == "pending"

    _, admin = await signed_in(a.http, db, role="admin")
    flagged = await (await a.http.get("/api/v1/payments?flagged=true", headers=admin)).json()
    assert [p["id"] for p in flagged["items"]] == [started["payment_id"]]
    assert "amount mismatch" in flagged["items"][0]["flagged_reason"]
    assert (await a.http.get("/api/v1/payments?flagged=true", headers=headers)).status == 403


async def test_a_paymob_callback_is_matched_by_its_signed_order_not_the_unsigned_merchant_order_id(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    course, other_course = await paid_course(db, "100.00", "EGP"), await paid_course(db, "100.00", "EGP")
    _student, headers = await signed_in(a.http, db)
    victim = await checkout(a, headers, course, "paymob")
    mine = await checkout(a, headers, other_course, "paymob")
    victim_order, my_order = list(gateways.paymob.intentions)
    # A real, signed success for my order, with the victim's payment id in the unsigned merchant_order_id.
    txn = gateways.paymob.transaction(my_order, success=True)
    txn["order"]["merchant_order_id"] = victim["payment_id"]
    assert (await gateways.paymob.send(b.url, txn))[0] == 200
    assert (await payment_row(db, mine["payment_id"]))["status"] == "completed"
    assert (await payment_row(db, victim["payment_id"]))["status"] == "pending"
    assert victim_order != my_order


async def test_an_event_for_an_unknown_payment_is_stored_and_changes_nothing(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    session = {"id": "cs_test_unknown", "object": "checkout.session", "mode": "payment", "status": "complete",
               "payment_status": "paid", "amount_total": 4900, "currency": "usd",
               "client_reference_id": str(uuid.uuid4()), "metadata": {}, "payment_intent": "pi_x"}  # fmt: skip
    status, ack = await gateways.stripe.send(two[0].url, gateways.stripe.event("checkout.session.completed", session))
    assert (status, ack["duplicate"]) == (200, False)
    async with db.connection() as conn:
        [event] = await conn.fetch_all(select(payment_events))
    assert event["processed_at"] is not None and event["error"] == "unknown payment" and event["payment_id"] is None
    assert await count(db, payments) == 0


# --- refused webhooks: nothing stored -------------------------------------------


async def test_forged_stale_unsigned_and_tampered_webhooks_are_refused_and_nothing_is_stored(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, _ = two
    course = await paid_course(db, "100.00", "EGP")
    _student, headers = await signed_in(a.http, db)
    await checkout(a, headers, course, "paymob")
    order_id = next(iter(gateways.paymob.intentions))
    session = {"id": "cs_test_1", "mode": "payment", "payment_status": "paid", "amount_total": 1, "currency": "usd"}
    event = gateways.stripe.event("checkout.session.completed", session)
    body = json.dumps(event).encode()
    stripe_url = f"{a.url}/api/v1/payments/webhooks/stripe"
    signed = gateways.stripe.signed(body)["Stripe-Signature"]
    timestamp = signed.split(",")[0]
    from tests.fake_gateways import post

    refusals = [
        await post(stripe_url, body),  # unsigned
        await post(stripe_url, body, gateways.stripe.signed(body, secret="whsec_someone_else")),  # forged
        await post(stripe_url, body, gateways.stripe.signed(body, timestamp=int(time.time()) - 301)),  # stale
        await post(stripe_url, body, gateways.stripe.signed(body, timestamp=int(time.time()) + 301)),  # future
        await post(stripe_url, body.replace(b'"amount_total": 1', b'"amount_total": 2'), {"Stripe-Signature": signed}),
        await post(stripe_url, body, {"Stripe-Signature": f"{timestamp},v0={signed.split('v1=')[1]}"}),  # v0 only
        await post(stripe_url, body, {"Stripe-Signature": "t=abc,v1=zz"}),
        await post(stripe_url, body, {"Stripe-Signature": "garbage\u00e9"}),
    ]
    txn = gateways.paymob.transaction(order_id, success=True)
    refusals.append(await gateways.paymob.send(a.url, txn, hmac_value=""))
    refusals.append(await gateways.paymob.send(a.url, txn, hmac_value=paymob_sign(txn, "wrong-secret")))
    tampered = dict(txn, amount_cents=1)
    refusals.append(await gateways.paymob.send(a.url, tampered, hmac_value=paymob_sign(txn)))
    refusals.append(await gateways.paymob.send(a.url, dict(txn, success=False), hmac_value=paymob_sign(txn)))
    mf_event = {"Event": {"Code": 1, "Name": "PAYMENT_STATUS_CHANGED"}, "Data": {"Invoice": {"Id": "1"}}}
    refusals.append(await gateways.myfatoorah.send(a.url, mf_event, signature=""))
    refusals.append(await gateways.myfatoorah.send(a.url, mf_event, signature="bm90IGEgc2lnbmF0dXJl"))
    for status, problem in refusals:
        assert status == 400, problem
        assert problem["type"].endswith("/invalid-webhook") and problem["status"] == 400
    assert await count(db, payment_events) == 0


async def test_a_signed_stripe_signature_with_several_v1_values_is_accepted_while_a_secret_rolls(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    event = gateways.stripe.event("customer.created", {"id": "cus_1"})
    body = json.dumps(event).encode()
    header = gateways.stripe.signed(body)["Stripe-Signature"]
    t, v1 = header.split(",")
    from tests.fake_gateways import post

    rolled = f"{t},v1={'0' * 64},{v1},v0=deadbeef,v9=unknown"
    status, ack = await post(f"{two[0].url}/api/v1/payments/webhooks/stripe", body, {"Stripe-Signature": rolled})
    assert (status, ack["duplicate"]) == (200, False)
    async with db.connection() as conn:
        [stored] = await conn.fetch_all(select(payment_events))
    assert stored["event_id"] == event["id"] and stored["error"].startswith("nothing to apply")


async def test_webhooks_of_a_gateway_without_credentials_are_not_found(
    aiohttp_client: Any, servers: Servers, gateways: Gateways
) -> None:
    settings = {k: v for k, v in gateways.settings().items() if not k.startswith("myfatoorah")}
    client = await aiohttp_client(create_app(make_config(servers, payments=settings)))
    response = await client.post("/api/v1/payments/webhooks/myfatoorah", data=b"{}")
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_an_oversized_webhook_body_is_refused_with_413(two: list[Instance], gateways: Gateways) -> None:
    from tests.fake_gateways import post

    body = b'{"pad": "' + b"x" * 70_000 + b'"}'
    status, problem = await post(f"{two[0].url}/api/v1/payments/webhooks/stripe", body, gateways.stripe.signed(body))
    assert status == 413 and problem["status"] == 413


async def test_a_signed_event_with_nul_characters_is_stored_without_them(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    event = gateways.stripe.event("customer.updated", {"id": "cus_1", "name": "nul\u0000here"})
    status, _ = await gateways.stripe.send(two[0].url, event)
    assert status == 200
    async with db.connection() as conn:
        [stored] = await conn.fetch_all(select(payment_events))
    assert stored["payload"]["data"]["object"]["name"] == "nul\ufffdhere"


async def test_a_webhook_body_split_across_many_tcp_writes_verifies(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    """The raw body is read whole whatever pieces it comes in (Content-Length, then chunked)."""
    host, port = two[1].http.host, two[1].http.port
    for chunked in (False, True):
        event = gateways.stripe.event("customer.created", {"id": f"cus_{chunked}", "note": "é" * 300})
        body = json.dumps(event).encode()
        signature = gateways.stripe.signed(body)["Stripe-Signature"]
        reader, writer = await asyncio.open_connection(host, port)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        head = (
            f"POST /api/v1/payments/webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {signature}\r\n{framing}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        for i in range(0, len(body), 7):
            piece = body[i : i + 7]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            await writer.drain()
            await asyncio.sleep(0)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b'"duplicate": false' in answer or b'"duplicate":false' in answer
    assert await count(db, payment_events) == 2


# --- checkout's refusals ------------------------------------------------------


async def test_checkout_refusals_and_the_pending_checkout_returned_again(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    instructor = await make_user(db, role="instructor")
    free = await make_course(db, instructor, is_published=True)
    course = await paid_course(db, instructor=instructor)
    student, headers = await signed_in(a.http, db)

    async def attempt(instance: Instance, body: dict[str, Any], h: dict[str, str] = headers) -> Any:
        return await instance.http.post("/api/v1/payments/checkout", json=body, headers=h)

    assert (await attempt(a, {"course_id": str(free["id"]), "gateway": "stripe"})).status == 409
    bad_gateway = await attempt(a, {"course_id": str(course["id"]), "gateway": "paypal"})
    assert bad_gateway.status == 422 and (await bad_gateway.json())["errors"][0]["field"] == "gateway"
    assert (await attempt(a, {"course_id": str(uuid.uuid4()), "gateway": "stripe"})).status == 404
    assert (await attempt(a, {"course_id": "not-a-uuid", "gateway": "stripe"})).status == 422
    assert (await a.http.post("/api/v1/payments/checkout", json={"course_id": str(course["id"]),
            "gateway": "stripe"})).status == 401  # fmt: skip
    _, teacher = await signed_in(a.http, db, role="instructor")
    assert (await attempt(a, {"course_id": str(course["id"]), "gateway": "stripe"}, teacher)).status == 403

    first = await attempt(a, {"course_id": str(course["id"]), "gateway": "stripe"})
    again = await attempt(b, {"course_id": str(course["id"]), "gateway": "stripe"})
    assert (first.status, again.status) == (201, 200)
    assert (await first.json()) == (await again.json())
    assert len(gateways.stripe.sessions) == 1

    enrolled = await paid_course(db, instructor=instructor)
    await make_enrollment(db, student, enrolled)
    conflict = await attempt(a, {"course_id": str(enrolled["id"]), "gateway": "paymob"})
    assert conflict.status == 409 and (await conflict.json())["enrollment_id"]


async def test_concurrent_checkouts_for_one_course_make_one_pending_payment(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    course = await paid_course(db)
    _student, headers = await signed_in(two[0].http, db)
    body = {"course_id": str(course["id"]), "gateway": "myfatoorah"}
    responses = await asyncio.gather(
        *(two[i % 2].http.post("/api/v1/payments/checkout", json=body, headers=headers) for i in range(6))
    )
    bodies = [await r.json() for r in responses]
    assert {r.status for r in responses} <= {200, 201}
    assert len({b["payment_id"] for b in bodies}) == 1
    assert await count(db, payments) == 1


async def test_a_gateway_that_is_not_configured_is_refused_with_422(
    aiohttp_client: Any, servers: Servers, gateways: Gateways, db: Database
) -> None:
    settings = {k: v for k, v in gateways.settings().items() if not k.startswith("paymob")}
    client = await aiohttp_client(create_app(make_config(servers, payments=settings)))
    course = await paid_course(db)
    _, headers = await signed_in(client, db)
    response = await client.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": "paymob"}, headers=headers
    )
    assert response.status == 422 and "not configured" in (await response.json())["errors"][0]["message"]


@pytest.mark.parametrize("gateway", ["stripe", "paymob", "myfatoorah"])
async def test_a_gateway_down_at_checkout_answers_503_with_retry_after_and_leaves_nothing(
    two: list[Instance], db: Database, gateways: Gateways, gateway: str
) -> None:
    course = await paid_course(db, "100.000", "KWD")
    _student, headers = await signed_in(two[0].http, db)
    getattr(gateways, gateway).down = True
    response = await two[0].http.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": gateway}, headers=headers
    )
    problem = await response.json()
    assert response.status == 503 and response.headers["Retry-After"] == "30", problem
    assert problem["type"].endswith("/gateway-unavailable")
    assert await count(db, payments) == 0 and await count(db, enrollments) == 0

    getattr(gateways, gateway).down = False
    response = await two[1].http.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": gateway}, headers=headers
    )
    assert response.status == 201


async def test_an_unreachable_gateway_is_a_503_too(
    aiohttp_client: Any, servers: Servers, gateways: Gateways, db: Database
) -> None:
    from lms.devservers import free_port

    settings = gateways.settings() | {"stripe_api_base": f"http://127.0.0.1:{free_port()}"}
    client = await aiohttp_client(create_app(make_config(servers, payments=settings)))
    course = await paid_course(db)
    _, headers = await signed_in(client, db)
    response = await client.post(
        "/api/v1/payments/checkout", json={"course_id": str(course["id"]), "gateway": "stripe"}, headers=headers
    )
    assert response.status == 503 and response.headers["Retry-After"]
    assert await count(db, payments) == 0


# --- refunds ------------------------------------------------------------------


async def paid_stripe_payment(two: list[Instance], db: Database, gateways: Gateways) -> tuple[Row, Row, str]:
    a, b = two
    course = await paid_course(db)
    student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "stripe")
    session_id = gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"]
    await gateways.stripe.send(
        b.url, gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(session_id))
    )
    return student, course, started["payment_id"]


async def test_an_admin_refunds_part_of_a_payment_once_and_the_enrollment_expires(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    student, course, pid = await paid_stripe_payment(two, db, gateways)
    student_headers = bearer((await login(a.http, student["email"]))["access_token"])
    _, admin = await signed_in(a.http, db, role="admin")
    url = f"/api/v1/payments/{pid}/refund"
    assert (await a.http.post(url, json={}, headers=student_headers)).status == 403
    bad = await a.http.post(url, json={"amount": "49.001"}, headers=admin)
    assert bad.status == 422
    assert (await a.http.post(url, json={"amount": "50"}, headers=admin)).status == 422

    response = await a.http.post(url, json={"amount": "20.50", "reason": "asked nicely"}, headers=admin)
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "refunded" and body["refunded_amount"] == {"amount": "20.50", "currency": "USD"}
    [refund] = gateways.stripe.refunds
    payment = await payment_row(db, pid)
    assert refund["payment_intent"] == payment["gateway_transaction_id"] and refund["amount"] == "2050"
    assert (await enrollment_of(db, student, course))["status"] == "expired"  # type: ignore[index]
    assert (await b.http.post(url, json={}, headers=admin)).status == 409
    assert len(gateways.stripe.refunds) == 1

    # Stripe then reports the refund: already recorded, nothing more changes.
    charge = {"id": "ch_1", "object": "charge", "payment_intent": payment["gateway_transaction_id"],
              "amount": 4900, "amount_refunded": 2050, "currency": "usd", "refunded": False}  # fmt: skip
    assert (await gateways.stripe.send(b.url, gateways.stripe.event("charge.refunded", charge)))[0] == 200
    assert (await payment_row(db, pid))["refunded_amount"] == Decimal("20.50")


async def test_a_refund_made_at_stripe_reaches_the_platform_through_its_webhook(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    student, course, pid = await paid_stripe_payment(two, db, gateways)
    payment = await payment_row(db, pid)
    charge = {"id": "ch_2", "object": "charge", "payment_intent": payment["gateway_transaction_id"],
              "amount": 4900, "amount_refunded": 4900, "currency": "usd", "refunded": True}  # fmt: skip
    assert (await gateways.stripe.send(two[0].url, gateways.stripe.event("charge.refunded", charge)))[0] == 200
    refunded = await payment_row(db, pid)
    assert refunded["status"] == "refunded" and refunded["refunded_amount"] == Decimal("49.00")
    assert (await enrollment_of(db, student, course))["status"] == "expired"  # type: ignore[index]


async def test_refunds_at_paymob_and_myfatoorah_and_a_gateway_down_leaves_the_payment_refundable(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    _, admin = await signed_in(a.http, db, role="admin")
    course = await paid_course(db, "100.00", "EGP")
    _student, headers = await signed_in(a.http, db)
    started = await checkout(a, headers, course, "paymob")
    order_id = next(iter(gateways.paymob.intentions))
    txn = gateways.paymob.transaction(order_id, success=True)
    await gateways.paymob.send(b.url, txn)
    url = f"/api/v1/payments/{started['payment_id']}/refund"
    gateways.paymob.down = True
    down = await a.http.post(url, json={}, headers=admin)
    assert down.status == 503 and down.headers["Retry-After"]
    assert (await payment_row(db, started["payment_id"]))["status"] == "completed"
    gateways.paymob.down = False
    assert (await a.http.post(url, json={}, headers=admin)).status == 200
    assert gateways.paymob.refunds[0]["transaction_id"] == str(txn["id"])
    assert gateways.paymob.refunds[0]["amount_cents"] == 10000

    kwd = await paid_course(db, "7.250", "KWD")
    started = await checkout(a, headers, kwd, "myfatoorah")
    invoice_id = next(iter(gateways.myfatoorah.invoices))
    gateways.myfatoorah.pay(invoice_id)
    await gateways.myfatoorah.send(b.url, gateways.myfatoorah.v2_payment_event(invoice_id))
    response = await a.http.post(
        f"/api/v1/payments/{started['payment_id']}/refund", json={"amount": "0.125"}, headers=admin
    )
    assert response.status == 200
    assert (await response.json())["refunded_amount"] == {"amount": "0.125", "currency": "KWD"}
    [mf_refund] = gateways.myfatoorah.refunds
    assert (mf_refund["Key"], mf_refund["KeyType"], mf_refund["Amount"]) == (str(invoice_id), "InvoiceId", "0.125")


async def test_a_pending_payment_cannot_be_refunded(two: list[Instance], db: Database, gateways: Gateways) -> None:
    course = await paid_course(db)
    _, headers = await signed_in(two[0].http, db)
    started = await checkout(two[0], headers, course, "stripe")
    _, admin = await signed_in(two[0].http, db, role="admin")
    response = await two[0].http.post(f"/api/v1/payments/{started['payment_id']}/refund", headers=admin)
    assert response.status == 409
    assert (await two[0].http.post(f"/api/v1/payments/{uuid.uuid4()}/refund", headers=admin)).status == 404


# --- subscriptions ------------------------------------------------------------


async def test_a_subscription_is_paid_renewed_covers_paid_courses_and_ends_when_cancelled(
    two: list[Instance], db: Database, gateways: Gateways, smtp_server: SmtpServer
) -> None:
    a, b = two
    _student, headers = await signed_in(a.http, db)
    assert (await a.http.post("/api/v1/payments/subscriptions", json={"plan": "monthly", "gateway": "paymob"},
            headers=headers)).status == 422  # fmt: skip
    unknown = await a.http.post("/api/v1/payments/subscriptions", json={"plan": "gold", "gateway": "stripe"},
                                headers=headers)  # fmt: skip
    assert unknown.status == 422 and (await unknown.json())["errors"][0]["field"] == "plan"

    response = await a.http.post(
        "/api/v1/payments/subscriptions", json={"plan": "monthly", "gateway": "stripe"}, headers=headers
    )
    created = await response.json()
    assert response.status == 201, created
    assert created["status"] == "pending" and created["amount"] == {"amount": "19.00", "currency": "USD"}
    sid = created["subscription_id"]
    [form] = gateways.stripe.calls("/v1/checkout/sessions")
    assert form["mode"] == "subscription" and form["line_items[0][price_data][recurring][interval]"] == "month"
    assert form["client_reference_id"] == sid and form["subscription_data[metadata][subscription_id]"] == sid
    again = await b.http.post(
        "/api/v1/payments/subscriptions", json={"plan": "monthly", "gateway": "stripe"}, headers=headers
    )
    assert again.status == 200 and (await again.json())["subscription_id"] == sid

    session = gateways.stripe.pay(gateways.stripe.by_idempotency_key[f"subscription-{sid}"])
    day = 86_400
    now = int(time.time())
    first = gateways.stripe.invoice(session, sid, start=now, end=now + 30 * day)
    # The invoice arrives before the checkout's completion: both apply.
    assert (await gateways.stripe.send(b.url, gateways.stripe.event("invoice.paid", first)))[0] == 200
    assert (await gateways.stripe.send(a.url, gateways.stripe.event("checkout.session.completed", session)))[0] == 200
    mine = await (await a.http.get("/api/v1/payments/subscriptions/mine", headers=headers)).json()
    [sub] = mine["items"]
    assert sub["status"] == "active" and sub["end_date"].startswith(
        time.strftime("%Y-%m-%d", time.gmtime(now + 30 * day))
    )
    smtp_server.catcher.wait_for(1)

    course = await paid_course(db)
    enrolled = await a.http.post("/api/v1/enrollments", json={"course_id": str(course["id"])}, headers=headers)
    assert enrolled.status == 201 and (await enrolled.json())["status"] == "active"
    covered = await a.http.post(
        "/api/v1/payments/checkout", json={"course_id": str((await paid_course(db))["id"]), "gateway": "stripe"},
        headers=headers,
    )  # fmt: skip
    assert covered.status == 409

    renewal = gateways.stripe.invoice(session, sid, start=now + 30 * day, end=now + 60 * day)
    renewal_event = gateways.stripe.event("invoice.paid", renewal)
    for _ in range(2):
        assert (await gateways.stripe.send(b.url, renewal_event))[0] == 200
    # An older update arriving after the renewal does not shorten the period.
    stale = gateways.stripe.subscription(session, sid, "active", current_period_end=now + 30 * day)
    assert (await gateways.stripe.send(a.url, gateways.stripe.event("customer.subscription.updated", stale)))[0] == 200
    [sub] = (await (await a.http.get("/api/v1/payments/subscriptions/mine", headers=headers)).json())["items"]
    assert sub["end_date"].startswith(time.strftime("%Y-%m-%d", time.gmtime(now + 60 * day)))
    paid = await (await a.http.get("/api/v1/payments/mine", headers=headers)).json()
    assert paid["total"] == 2 and {p["subscription_id"] for p in paid["items"]} == {sid}
    assert {p["gateway_reference"] for p in paid["items"]} == {first["id"], renewal["id"]}

    deleted = gateways.stripe.subscription(session, sid, "canceled", ended_at=now + 31 * day)
    assert (await gateways.stripe.send(b.url, gateways.stripe.event("customer.subscription.deleted", deleted)))[
        0
    ] == 200
    revived = gateways.stripe.subscription(session, sid, "active", current_period_end=now + 90 * day)
    assert (await gateways.stripe.send(b.url, gateways.stripe.event("customer.subscription.updated", revived)))[
        0
    ] == 200
    [sub] = (await (await a.http.get("/api/v1/payments/subscriptions/mine", headers=headers)).json())["items"]
    assert sub["status"] == "cancelled" and sub["cancelled_at"]
    later = await paid_course(db)
    blocked = await a.http.post("/api/v1/enrollments", json={"course_id": str(later["id"])}, headers=headers)
    assert blocked.status == 402


# --- revenue ------------------------------------------------------------------


async def test_revenue_summary_by_currency_day_and_gateway_admin_all_instructor_own_student_never(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    teacher, teacher_headers = await signed_in(a.http, db, role="instructor")
    _, admin = await signed_in(a.http, db, role="admin")
    _student, headers = await signed_in(a.http, db)
    own = await paid_course(db, "3000", "JPY", instructor=teacher)
    others = await paid_course(db, "1.250", "KWD")
    started = await checkout(a, headers, own, "stripe")
    sid = gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"]
    await gateways.stripe.send(b.url, gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(sid)))
    started = await checkout(a, headers, others, "myfatoorah")
    invoice_id = next(iter(gateways.myfatoorah.invoices))
    gateways.myfatoorah.pay(invoice_id)
    await gateways.myfatoorah.send(b.url, gateways.myfatoorah.v2_payment_event(invoice_id))
    await a.http.post(f"/api/v1/payments/{started['payment_id']}/refund", json={"amount": "0.250"}, headers=admin)

    everything = await (await a.http.get("/api/v1/payments/revenue/summary", headers=admin)).json()
    assert everything["scope"] == "all"
    assert everything["totals"] == [
        {"currency": "JPY", "gross": {"amount": "3000", "currency": "JPY"}, "refunded": {"amount": "0",
         "currency": "JPY"}, "net": {"amount": "3000", "currency": "JPY"}, "payments": 1},
        {"currency": "KWD", "gross": {"amount": "1.250", "currency": "KWD"}, "refunded": {"amount": "0.250",
         "currency": "KWD"}, "net": {"amount": "1.000", "currency": "KWD"}, "payments": 1},
    ]  # fmt: skip
    assert {(g["gateway"], g["currency"]) for g in everything["by_gateway"]} == {
        ("stripe", "JPY"),
        ("myfatoorah", "KWD"),
    }
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert {d["date"] for d in everything["by_day"]} == {today} and everything["to"] == today

    own_view = await (await a.http.get("/api/v1/payments/revenue/summary", headers=teacher_headers)).json()
    assert own_view["scope"] == "instructor" and [t["currency"] for t in own_view["totals"]] == ["JPY"]
    assert (await a.http.get("/api/v1/payments/revenue/summary", headers=headers)).status == 403
    past = await a.http.get("/api/v1/payments/revenue/summary?from=2020-01-01&to=2020-01-31", headers=admin)
    assert (await past.json())["totals"] == []
    backwards = await a.http.get("/api/v1/payments/revenue/summary?from=2020-02-01&to=2020-01-01", headers=admin)
    assert backwards.status == 422
    assert (await a.http.get("/api/v1/payments/revenue/summary?from=yesterday", headers=admin)).status == 422


async def test_my_payments_are_paginated_newest_first_and_private(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, _ = two
    _student, headers = await signed_in(a.http, db)
    ids = [(await checkout(a, headers, await paid_course(db), "stripe"))["payment_id"] for _ in range(3)]
    page = await (await a.http.get("/api/v1/payments/mine?limit=2", headers=headers)).json()
    assert page["total"] == 3 and [p["id"] for p in page["items"]] == ids[::-1][:2]
    rest = await (await a.http.get("/api/v1/payments/mine?limit=2&offset=2", headers=headers)).json()
    assert [p["id"] for p in rest["items"]] == [ids[0]]
    _, other = await signed_in(a.http, db)
    assert (await (await a.http.get("/api/v1/payments/mine", headers=other)).json())["total"] == 0
    assert (await a.http.get("/api/v1/payments/mine")).status == 401
    assert (await a.http.get("/api/v1/payments/mine?limit=1000", headers=headers)).status == 422


async def test_a_burst_of_webhooks_is_stored_in_batches_each_once_and_every_payment_settled(
    two: list[Instance], db: Database, gateways: Gateways
) -> None:
    a, b = two
    course = await paid_course(db)
    events = []
    for _ in range(12):
        _, headers = await signed_in(a.http, db)
        started = await checkout(a, headers, course, "stripe")
        session_id = gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"]
        events.append(gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(session_id)))
    # Every event twice, all at once, to both instances.
    results = await asyncio.gather(
        *(gateways.stripe.send(instance.url, event) for event in events for instance in (a, b))
    )
    assert {status for status, _ in results} == {200}
    assert sorted(ack["duplicate"] for _, ack in results) == [False] * 12 + [True] * 12
    assert await count(db, payment_events) == 12
    assert await count(db, payments, payments.c.status == "completed") == 12
    assert await count(db, email_log) == 12
