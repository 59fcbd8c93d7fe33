"""Error tracking (Sentry) and traces (OpenTelemetry), each off unless configured.

:func:`setup_telemetry` is the one call a process makes, before it builds
its app or brokers (the instrumentations patch the libraries they trace).
Metrics are ``lms.metrics``; logs ``lms.logs``.
"""

from __future__ import annotations

from lms.config import Settings
from lms.telemetry.errors import setup_error_tracking
from lms.telemetry.tracing import setup_tracing


def setup_telemetry(config: Settings, process: str) -> None:
    setup_error_tracking(config, process)
    setup_tracing(config, process)
