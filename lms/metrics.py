"""Prometheus metrics: one registry per process (tests build many apps, each with its own).

Every family the platform exports is declared on a :class:`Metrics`: the
HTTP ones and those of jobs and payments here (the web app, the worker and
the scheduler all kick and run tasks), the Socket.IO and live-session ones
in ``realtime/metrics.py`` on the same registry. The web app serves it on
``/metrics``; ``lms worker`` and ``lms scheduler`` serve theirs with
:func:`serve_metrics` on ``metrics.worker_port`` / ``metrics.scheduler_port``.

Labels are bounded: routes are the route table's templates, tasks the
registry's names, queues, gateways and outcomes fixed sets. Never a user
id, a session id or a raw path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Work done just before a scrape (queue lengths, dependency checks) gets this long.
REFRESH_TIMEOUT_SECONDS = 2.0

Refresh = Callable[[], Awaitable[None]]


class JobMetrics:
    """Tasks by name: kicked where they are sent, the rest where they run."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ("task",)) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.kicked = counter("lms_jobs_kicked_total", "Tasks sent to the broker")
        self.started = counter("lms_jobs_started_total", "Task runs started (retries included)")
        self.succeeded = counter("lms_jobs_succeeded_total", "Task runs that returned")
        self.failed = counter("lms_jobs_failed_total", "Task runs that raised (each is retried or dead-lettered)")
        self.retried = counter("lms_jobs_retried_total", "Retries scheduled after a transient failure")
        self.dead_lettered = counter(
            "lms_jobs_dead_lettered_total", "Tasks that failed for good (permanent or retries exhausted)",
            ("task", "reason"),
        )  # fmt: skip
        self.duration = Histogram(
            "lms_job_duration_seconds", "Task run time, failed runs included", ["task"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=registry,
        )  # fmt: skip

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["queue"], registry=registry)

        # Read from Redis at scrape time (jobs/telemetry.py): the same for
        # every process that reports them, so dashboards take the max.
        self.stream_length = gauge("lms_jobs_stream_length", "Entries in the queue's stream (not yet trimmed)")
        self.pending = gauge("lms_jobs_pending", "Messages delivered to a worker and not acknowledged")
        self.oldest_pending_age = gauge(
            "lms_jobs_oldest_pending_age_seconds", "Age of the oldest unacknowledged message (0: none)"
        )
        self.delayed = gauge("lms_jobs_delayed", "Retries waiting for their backoff to pass")
        self.set_aside = gauge("lms_jobs_set_aside", "Messages set aside after killing workers (<stream>:dead)")


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhooks = Counter(
            "lms_payment_webhooks_total", "Gateway webhooks by outcome (accepted, duplicate, refused, disabled)",
            ["gateway", "outcome"], registry=registry,
        )  # fmt: skip
        self.settlement_seconds = Histogram(
            "lms_payment_settlement_seconds", "From a webhook event stored to its payment settled",
            ["gateway"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600), registry=registry,
        )  # fmt: skip
        self.reconciliations = Counter(
            "lms_payment_reconciliations_total", "Reconciliation runs by outcome (ok, failed)", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.reconciled = Counter(
            "lms_payment_reconciled_total", "What reconciliation runs did, by kind", ["kind"], registry=registry
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "lms_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.http_latency = Histogram(
            "lms_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )  # fmt: skip
        self.unhandled_errors = Counter(
            "lms_unhandled_errors_total", "Requests that ended in an unexpected error", registry=self.registry
        )
        self.ready_failures = Gauge(
            "lms_dependency_up", "1 when the dependency answered the last readiness check", ["dependency"],
            registry=self.registry,
        )  # fmt: skip
        self.dependency_latency = Gauge(
            "lms_dependency_check_seconds", "How long the dependency took to answer the last readiness check",
            ["dependency"], registry=self.registry,
        )  # fmt: skip
        self.jobs = JobMetrics(self.registry)
        self.payments = PaymentMetrics(self.registry)
        self._refreshers: list[Refresh] = []

    def add_gauges(self, name: str, doc: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """A gauge family whose samples are read at scrape time (pool usage, clients)."""
        self.registry.register(_ReadAtScrape(name, doc, read))

    def on_scrape(self, refresh: Refresh) -> None:
        """Run ``refresh`` (async: it may ask Redis or PostgreSQL) before each scrape."""
        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        """Every refresher, at once, within REFRESH_TIMEOUT_SECONDS; one failing leaves its gauges as they were."""
        if not self._refreshers:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(r(), REFRESH_TIMEOUT_SECONDS) for r in self._refreshers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("metrics: refreshing before a scrape failed: %s", result or type(result).__name__)

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class _ReadAtScrape(Collector):
    def __init__(self, name: str, doc: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        self.name, self.doc, self.read = name, doc, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        samples = list(self.read())
        labels = sorted({k for lbls, _ in samples for k in lbls})
        family = GaugeMetricFamily(self.name, self.doc, labels=labels)
        for lbls, value in samples:
            family.add_metric([lbls.get(k, "") for k in labels], value)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


async def serve_metrics(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """``GET /metrics`` on its own port, for processes that serve no HTTP otherwise (worker, scheduler)."""

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=await metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
