"""Every metric an operator expects appears on a real scrape, and the dashboard queries only those.

One scenario against a real app (on a real port) and a real ``lms worker``
serving its own /metrics: a small live game (host, two players, answers,
a duplicate answer, a flood of events, refused connects), jobs (an email
that succeeds after one retry, one that is dead-lettered), a Stripe
payment (webhook, duplicate, forgery, settlement by the worker) and a
reconciliation run. Then both endpoints are scraped.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from lms.app import create_app
from lms.devservers import free_port
from lms.jobqueue import JOBS
from tests.builders import signed_in
from tests.conftest import Instance, LmsProcess, Servers, SmtpCatcher, SmtpServer, make_config, running_smtp_server
from tests.fake_gateways import Gateways
from tests.fake_telemetry import wait_until
from tests.test_live_actor import T0
from tests.test_live_protocol import NS, call, code, connect, freeze, hosted, player
from tests.test_payments import checkout, paid_course

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "lms.json"
FAST_RETRIES = {"retry_base_seconds": 0.05, "retry_max_seconds": 0.1, "max_retries": 2}

# Every family the issue names, as sample names that must carry data after the scenario.
REQUIRED = {
    # HTTP and dependencies
    "lms_http_requests_total", "lms_http_request_duration_seconds_bucket", "lms_unhandled_errors_total",
    "lms_dependency_up", "lms_dependency_check_seconds", "lms_db_pool_connections",
    # jobs
    "lms_jobs_kicked_total", "lms_jobs_started_total", "lms_jobs_succeeded_total", "lms_jobs_failed_total",
    "lms_jobs_retried_total", "lms_jobs_dead_lettered_total", "lms_job_duration_seconds_bucket",
    "lms_jobs_stream_length", "lms_jobs_pending", "lms_jobs_oldest_pending_age_seconds", "lms_jobs_delayed",
    # live sessions
    "lms_live_sessions", "lms_live_players_connected", "lms_live_answers_total", "lms_live_broadcast_seconds_bucket",
    "lms_live_takeovers_total", "lms_live_mailbox_lag_seconds_bucket",
    # Socket.IO
    "lms_socketio_connections_total", "lms_socketio_connects_refused_total", "lms_socketio_events_in_total",
    "lms_socketio_events_out_total", "lms_socketio_clients",
    # payments
    "lms_payment_webhooks_total", "lms_payment_settlement_seconds_bucket", "lms_payment_reconciliations_total",
    "lms_payment_reconciled_total",
}  # fmt: skip
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "unknown": ("",)}


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> its (labels, value) rows; a declared family with no sample yet has its names, empty."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            samples.setdefault(family.name + suffix, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lbls, v in samples.get(name, []) if all(lbls.get(k) == w for k, w in labels.items()))


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


Scrape = dict[str, list[tuple[dict[str, str], float]]]


async def scrape_until(url: str, ready: Callable[[Scrape], bool], timeout: float = 30.0) -> Scrape:
    """Scrape until ``ready`` holds of what the endpoint reports."""
    samples: Scrape = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        samples = await scrape(url)
        if ready(samples):
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never reported what was awaited: {samples}")


def dashboard_metrics() -> set[str]:
    """The series every panel's PromQL selects (functions, grouping labels and matchers left out)."""
    found: set[str] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", target["expr"])
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
            found |= set(re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return found


@pytest.fixture
def refusing_once() -> Iterator[SmtpServer]:
    """An SMTP server that refuses its first login (a transient failure: the email is retried)."""
    catcher = SmtpCatcher(username="lms", password="pw")
    catcher.refuse_logins = True
    with running_smtp_server(catcher) as server:
        yield server


@pytest.mark.slow
async def test_every_metric_appears_after_a_live_game_jobs_and_a_payment(
    aiohttp_client: Any,
    servers: Servers,
    db: Any,
    live: Any,
    gateways: Gateways,
    refusing_once: SmtpServer,
    start_lms: Callable[..., LmsProcess],
) -> None:
    settings: dict[str, Any] = {"smtp": refusing_once.settings(), "payments": gateways.settings(), "jobs": FAST_RETRIES}
    worker_port = free_port()
    start_lms("worker", "--metrics-port", str(worker_port), **settings)
    app = create_app(make_config(servers, **settings))
    instance = Instance(app, await aiohttp_client(app))
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"

    # -- a small live game ------------------------------------------------------
    game, host = await hosted(live, [instance], db, questions=2)
    await freeze(instance, game["id"], T0)
    alice, _ = await player(live, instance, game["pin"], "Alice")
    bob, _ = await player(live, instance, game["pin"], "Bob")
    assert (await call(host, "start_session"))["state"] == "question"
    await alice.next("question_started", NS)
    for client, answer in ((alice, "b"), (bob, "a")):
        assert (await call(client, "submit_answer", {"question_index": 0, "answer": answer}))["ok"]
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": "a"})) == "already_answered"
    await alice.next("question_ended", NS)  # everyone answered: the question is revealed
    flood = await asyncio.gather(*(call(bob, "clock") for _ in range(40)))
    assert any(not ack["ok"] and ack["error"]["code"] == "rate_limited" for ack in flood)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await live().connect(instance.url, None, "/")  # no token: refused
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(live, instance, "not-a-token")
    in_game = await instance.http.get("/metrics")
    playing = parse(await in_game.text())
    assert value(playing, "lms_live_sessions") == 1
    assert value(playing, "lms_live_sessions", state="reveal") == 1
    assert value(playing, "lms_live_players_connected") == 2
    assert (await call(host, "end_session"))["ok"]
    await alice.next("session_ended", NS)

    # -- jobs: one email retried then sent, one dead-lettered --------------------
    jobs = app[JOBS]
    await jobs.enqueue("send_email", template="welcome", to="ada@example.com", context={"full_name": "Ada"})
    await jobs.enqueue("send_email", template="no-such-template", to="bo@example.com", context={})
    catcher = refusing_once.catcher
    await wait_until(lambda: bool(catcher.login_attempts), what="the first SMTP login")
    catcher.refuse_logins = False

    # -- a Stripe payment, its webhook again, a forged one, then reconciliation --
    course = await paid_course(db)
    _, headers = await signed_in(instance.http, db)
    started = await checkout(instance, headers, course, "stripe")
    session_id = gateways.stripe.by_idempotency_key[f"checkout-{started['payment_id']}"]
    event = gateways.stripe.event("checkout.session.completed", gateways.stripe.pay(session_id))
    assert await gateways.stripe.send(instance.url, event) == (200, {"received": True, "duplicate": False})
    assert (await gateways.stripe.send(instance.url, event))[1]["duplicate"] is True
    assert (await gateways.stripe.send(instance.url, event, secret="whsec_forged"))[0] == 400
    await jobs.enqueue("reconcile_payments")

    def worker_done(samples: Scrape) -> bool:
        return all(
            [
                value(samples, "lms_jobs_succeeded_total", task="send_email") >= 2,  # the welcome and the receipt
                value(samples, "lms_jobs_retried_total", task="send_email"),
                value(samples, "lms_jobs_dead_lettered_total", task="send_email", reason="permanent"),
                value(samples, "lms_payment_settlement_seconds_count", gateway="stripe"),
                value(samples, "lms_payment_reconciliations_total", outcome="ok"),
            ]
        )

    worker = await scrape_until(worker_metrics, worker_done)
    web = await scrape(f"{instance.url}/metrics")

    # The kicks are counted where they are sent (the app), the runs where they run (the worker).
    assert value(web, "lms_jobs_kicked_total", task="send_email") == 2
    assert value(web, "lms_jobs_kicked_total", task="settle_payment_events") >= 1
    assert value(web, "lms_jobs_kicked_total", task="reconcile_payments") == 1
    # Emails: the welcome (refused once, then sent), the dead letter, the payment's receipt.
    runs = {k: value(worker, f"lms_jobs_{k}_total", task="send_email") for k in ("started", "succeeded", "failed")}
    assert runs["started"] == runs["succeeded"] + runs["failed"] == 4
    failures = value(worker, "lms_jobs_retried_total") + value(worker, "lms_jobs_dead_lettered_total")
    assert runs["failed"] == failures == 2
    assert value(worker, "lms_job_duration_seconds_count", task="send_email") == 4
    assert value(web, "lms_payment_webhooks_total", gateway="stripe", outcome="accepted") == 1
    assert value(web, "lms_payment_webhooks_total", gateway="stripe", outcome="duplicate") == 1
    assert value(web, "lms_payment_webhooks_total", gateway="stripe", outcome="refused") == 1
    assert value(web, "lms_live_answers_total", outcome="accepted") == 2
    assert value(web, "lms_live_answers_total", outcome="already_answered") == 1
    assert value(web, "lms_socketio_events_in_total", namespace=NS, event="clock", outcome="rate_limited") >= 1
    assert value(web, "lms_socketio_connects_refused_total", namespace="/", reason="no_token") == 1
    assert value(web, "lms_socketio_connects_refused_total", namespace=NS, reason="bad_token") == 1
    assert value(web, "lms_socketio_connections_total", namespace=NS, transport="websocket") == 3
    assert value(web, "lms_dependency_up", dependency="postgres") == 1
    assert value(worker, "lms_jobs_stream_length", queue="emails") >= 0

    with_data = {name for samples in (web, worker) for name, rows in samples.items() if rows}
    assert sorted(REQUIRED - with_data) == []
    # Bounded labels: no ids, pins or raw paths anywhere.
    for samples in (web, worker):
        for name, rows in samples.items():
            for labels, _ in rows:
                for label_value in labels.values():
                    assert not UUID.search(label_value) and game["pin"] not in label_value, (name, labels)
    # The dashboard asks only for what the platform exports (and Prometheus's own `up`);
    # all of it but the failure counters that stay at zero in a good run has data by now.
    declared = set(web) | set(worker)
    assert sorted(dashboard_metrics() - declared - {"up"}) == []
    assert sorted(dashboard_metrics() - with_data - {"up", "lms_socketio_emit_failures_total"}) == []


@pytest.mark.no_services
def test_the_dashboard_covers_http_jobs_live_sessions_payments_and_dependencies() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["HTTP", "Jobs", "Live sessions and Socket.IO", "Payments", "Dependencies"]
    queried = dashboard_metrics()
    assert {m for m in queried if not m.startswith("lms_")} == {"up"}
    assert sorted(REQUIRED - queried) == []  # every family the issue names has its panel
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


async def test_the_app_counts_the_kicks_it_sends(client: Any) -> None:
    await client.app[JOBS].enqueue("diagnostics.noop")
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "lms_jobs_kicked_total", task="diagnostics.noop") == 1
    assert value(samples, "lms_jobs_stream_length", queue="default") == 1
    assert value(samples, "lms_jobs_pending", queue="default") == 0


@pytest.mark.slow
async def test_a_worker_reports_what_it_holds_and_how_long(
    client: Any, redis: Any, start_lms: Callable[..., LmsProcess]
) -> None:
    port = free_port()
    start_lms("worker", "--metrics-port", str(port))
    key = f"probe-{uuid.uuid4().hex[:8]}"
    await client.app[JOBS].enqueue("diagnostics.probe", key=key, hold=True)
    url = f"http://127.0.0.1:{port}/metrics"
    held = await scrape_until(url, lambda m: value(m, "lms_jobs_started_total", task="diagnostics.probe") == 1)
    assert value(held, "lms_jobs_pending", queue="default") == 1
    assert value(held, "lms_jobs_oldest_pending_age_seconds", queue="default") >= 0
    assert value(held, "lms_jobs_succeeded_total", task="diagnostics.probe") == 0
    await redis.set(f"{key}:release", b"1")
    done = await scrape_until(url, lambda m: value(m, "lms_jobs_pending", queue="default") == 0)
    assert value(done, "lms_jobs_succeeded_total", task="diagnostics.probe") == 1
    assert value(done, "lms_job_duration_seconds_count", task="diagnostics.probe") == 1
    assert value(done, "lms_job_duration_seconds_sum", task="diagnostics.probe") > 0
