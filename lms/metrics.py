"""Prometheus metrics, one registry per application (tests build many apps)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


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
        self.jobs_kicked = Counter(
            "lms_jobs_kicked_total", "Tasks sent to the broker", ["task"], registry=self.registry
        )
        self.ready_failures = Gauge(
            "lms_dependency_up", "1 when the dependency answered the last readiness check", ["dependency"],
            registry=self.registry,
        )  # fmt: skip

    def add_gauges(self, name: str, doc: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """A gauge family whose samples are read at scrape time (pool usage, clients)."""
        self.registry.register(_ReadAtScrape(name, doc, read))


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
