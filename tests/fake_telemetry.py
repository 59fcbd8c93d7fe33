"""Local stand-ins for Sentry and an OpenTelemetry collector, speaking their documented protocols.

- :class:`FakeSentry` takes ``POST /api/<project>/envelope/``: a Sentry
  envelope (a JSON header line, then items, each a JSON header line with
  its ``length`` and the payload). It keeps the ``event`` items. (The SDK
  compresses the body, with brotli or gzip; aiohttp's server decodes it.)
- :class:`FakeCollector` takes OTLP/HTTP ``POST /v1/traces``: a protobuf
  ``ExportTraceServiceRequest``, and keeps every span flattened with its
  service name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def parse_envelope(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The items of a Sentry envelope: (item header, payload)."""
    header_line, _, rest = data.partition(b"\n")
    json.loads(header_line)  # the envelope header (event_id, dsn, sent_at)
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        item = json.loads(line)
        if "length" in item:
            payload, rest = rest[: item["length"]], rest[item["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item, payload))
    return items


async def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


@dataclass
class FakeSentry:
    events: list[dict[str, Any]] = field(default_factory=list)
    envelopes: int = 0
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self.envelope)
        return app

    @property
    def dsn(self) -> str:
        host = self.url.removeprefix("http://")
        return f"http://public-key@{host}/42"

    async def envelope(self, request: web.Request) -> web.Response:
        assert request.match_info["project"] == "42"
        assert "sentry_key=public-key" in request.headers.get("X-Sentry-Auth", "")
        self.envelopes += 1
        for item, payload in parse_envelope(await request.read()):
            if item.get("type") == "event":
                self.events.append(json.loads(payload))
        return web.json_response({"id": "0" * 32})


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status: int


@dataclass
class FakeCollector:
    spans: list[Span] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app

    async def traces(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            service=str(resource.get("service.name")),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status=span.status.code,
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    def descendants(self, root: Span) -> list[Span]:
        """Every span under ``root`` in its trace (children, their children...)."""
        spans = self.trace(root.trace_id)
        found: list[Span] = []
        parents = {root.span_id}
        while True:
            more = [s for s in spans if s.parent_id in parents and s not in found]
            if not more:
                return found
            found.extend(more)
            parents |= {s.span_id for s in more}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None
