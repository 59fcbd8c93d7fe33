"""OpenTelemetry traces, exported over OTLP/HTTP; nothing at all unless an endpoint is configured.

On (``LMS_OTEL_EXPORTER_OTLP_ENDPOINT``, or OpenTelemetry's own
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``), :func:`setup_tracing` installs
the SDK and the maintained instrumentations before the process builds its
app or brokers:

- ``aiohttp-server`` (``lms serve`` only): a SERVER span per request, named
  by its route template (``GET /api/v1/courses/{course_id}``), continuing a
  ``traceparent`` the caller sent;
- ``aiohttp-client``: the gateways' APIs, with ``traceparent`` sent on;
- ``redis``: every command (rate limits, revocation, the job streams, live
  sessions), with arguments left out;
- ``aiopg`` (built on the ``dbapi`` instrumentation): every statement,
  parameters left out. The psycopg2 instrumentation would time only the
  send of an asynchronous connection's query; aiopg's waits for the result.

Tasks continue the trace that kicked them: the kicking side writes the
W3C ``traceparent`` into the message's labels (:func:`inject`), the worker
starts the task's CONSUMER span under it (:func:`start_task_span`). So one
trace runs from an HTTP request through its SQL and Redis calls to the job
it kicked and the job's own spans.

Traces start only at entry points (a request, a task run): a Redis or SQL
call with no trace around it (the live actors' mailbox reads, the workers'
polling, heartbeats) makes no trace of its own, or background loops would
bury the requests. ``otel.sample_ratio`` keeps a share of the entry points.

Off, nothing here is imported beyond this module, no library is patched and
:func:`inject` / :func:`start_task_span` return at once (bench/telemetry.py
measures both ways).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import MutableMapping, Sequence
from typing import Any

from lms import __version__
from lms.config import Settings

log = logging.getLogger(__name__)

_enabled = False


def tracing_enabled() -> bool:
    return _enabled


def setup_tracing(config: Settings, process: str) -> bool:
    """Install tracing for this process (``serve``, ``worker``, ``scheduler``...) if configured; True if on."""
    global _enabled
    if _enabled or not config.otel.enabled:
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiopg import AiopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    settings = config.otel
    resource = Resource.create(
        {"service.name": f"lms-{process}", "service.version": __version__, "deployment.environment.name": config.env}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_entry_points(settings.sample_ratio)))
    if settings.exporter_otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=settings.exporter_otlp_endpoint.rstrip("/") + "/v1/traces")
    else:  # the standard variables: the exporter reads them (endpoint, headers, certificates, timeout)
        exporter = OTLPSpanExporter()
    # Batches leave from a thread of their own; the provider flushes at exit.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    RedisInstrumentor().instrument(tracer_provider=provider)
    AiopgInstrumentor().instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    if process == "serve":
        _instrument_server(provider, settings.excluded_paths)
    _enabled = True
    log.info("tracing on: spans of lms-%s go to %s", process, settings.exporter_otlp_endpoint or "OTEL_EXPORTER_OTLP_*")
    return True


def _instrument_server(provider: Any, excluded_paths: Sequence[str]) -> None:
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    # The instrumentation reads its exclusions from this variable only; an
    # operator's own value wins.
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", ",".join(excluded_paths))
    # It swaps web.Application for a subclass that puts its middleware
    # first (create_app then gets it); aiohttp warns about subclassing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Inheritance class", DeprecationWarning)
        AioHttpServerInstrumentor().instrument(tracer_provider=provider)


def _entry_points(ratio: float) -> Any:
    """A root sampler: a trace may start at a SERVER or CONSUMER span (then ``ratio`` decides), never at a CLIENT."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
    from opentelemetry.trace import SpanKind

    class EntryPoints(Sampler):
        def __init__(self) -> None:
            self.ratio = TraceIdRatioBased(ratio)

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind in (SpanKind.SERVER, SpanKind.CONSUMER):
                return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return f"EntryPoints({self.ratio.get_description()})"

    return EntryPoints()


# -- task messages ------------------------------------------------------------


def inject(labels: MutableMapping[str, Any]) -> None:
    """Write the current trace context (``traceparent``, ``tracestate``) into a task's labels."""
    if not _enabled:
        return
    from opentelemetry import propagate

    propagate.inject(labels)


class TaskSpan:
    """A running task's CONSUMER span, current until :meth:`end`."""

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self.token = token

    def failed(self, error: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.record_exception(error)
        self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def end(self) -> None:
        from opentelemetry import context

        context.detach(self.token)  # type: ignore[arg-type]
        self.span.end()


def start_task_span(task_name: str, task_id: str, labels: dict[str, Any], queue: str) -> TaskSpan | None:
    """Start the span of a task run under the trace its labels carry; None when tracing is off."""
    if not _enabled:
        return None
    from opentelemetry import context, propagate, trace

    carrier = {k: v for k, v in labels.items() if isinstance(v, str)}
    span = trace.get_tracer("lms.jobs", __version__).start_span(
        f"task {task_name}",
        context=propagate.extract(carrier),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "taskiq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": task_id,
            "lms.task": task_name,
            "lms.task.retries": int(labels.get("retries", 0) or 0),
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    return TaskSpan(span, token)
