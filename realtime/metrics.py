"""What the live side counts, on the application's registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from lms.metrics import Metrics


class RealtimeMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.events_in = Counter(
            "lms_socketio_events_in_total", "Client events by namespace, event and outcome (ok or error code)",
            ["namespace", "event", "outcome"], registry=registry,
        )  # fmt: skip
        self.events_out = Counter(
            "lms_socketio_events_out_total", "Events the server emitted, by namespace and event",
            ["namespace", "event"], registry=registry,
        )  # fmt: skip
        self.emit_seconds = Histogram(
            "lms_socketio_emit_seconds", "Time to emit an event (local delivery and publish to other instances)",
            ["namespace"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )  # fmt: skip
        self.emit_failures = Counter(
            "lms_socketio_emit_failures_total", "Emits that failed or were dropped", ["reason"], registry=registry
        )
        self.connections = Counter(
            "lms_socketio_connections_total", "Connection attempts by namespace and outcome",
            ["namespace", "outcome"], registry=registry,
        )  # fmt: skip
