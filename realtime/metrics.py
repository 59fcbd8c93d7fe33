"""What the live side counts, on the application's registry (``lms.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from lms.metrics import Metrics

TRANSPORTS = ("polling", "websocket")


class LiveMetrics:
    """Live quiz sessions: answers at the edge, fan-out of each step, the owners' mailboxes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = Counter(
            "lms_live_answers_total", "Answers by outcome: accepted, or the error code of the refusal",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.broadcast_seconds = Histogram(
            "lms_live_broadcast_seconds", "Time to hand one step's events to this instance's clients",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
        )  # fmt: skip
        self.mailbox_lag_seconds = Histogram(
            "lms_live_mailbox_lag_seconds", "From a host command or join posted to its owner applying it",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
        )  # fmt: skip
        self.takeovers = Counter(
            "lms_live_takeovers_total", "Live sessions this instance took over from an owner that stopped answering",
            registry=registry,
        )  # fmt: skip


class RealtimeMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.events_in = Counter(
            "lms_socketio_events_in_total",
            "Client events by namespace, event and outcome (ok or error code; rate_limited among them)",
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
            "lms_socketio_connections_total", "Connections accepted, by namespace and transport",
            ["namespace", "transport"], registry=registry,
        )  # fmt: skip
        self.refusals = Counter(
            "lms_socketio_connects_refused_total",
            "Connections refused, by namespace and reason (no_token, bad_token, unavailable, error)",
            ["namespace", "reason"], registry=registry,
        )  # fmt: skip
        self.live = LiveMetrics(registry)

    def accepted(self, namespace: str, transport: str) -> None:
        self.connections.labels(namespace, transport if transport in TRANSPORTS else "other").inc()

    def refused(self, namespace: str, reason: str) -> None:
        self.refusals.labels(namespace, reason).inc()
