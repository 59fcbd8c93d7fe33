"""Acknowledgement shapes and client payload models (the general rules of realtime/README.md).

Every client event is answered ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Ack = dict[str, Any]

INVALID_PAYLOAD = "invalid_payload"
RATE_LIMITED = "rate_limited"
UNKNOWN_EVENT = "unknown_event"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
INTERNAL_ERROR = "internal_error"


def ok(**fields: Any) -> Ack:
    return {"ok": True, **fields}


def failure(code: str, message: str) -> Ack:
    return {"ok": False, "error": {"code": code, "message": message}}


class EventError(Exception):
    """A client event that cannot be done; becomes an ``ok:false`` ack."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Payload(BaseModel):
    # Unknown fields are ignored: newer clients may send more than we read.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Authenticate(Payload):
    token: str = Field(min_length=1, max_length=8192)


class CourseRef(Payload):
    course_id: uuid.UUID


def describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        where = ".".join(str(p) for p in e["loc"]) or "payload"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def to_json(value: Any) -> Any:
    """Domain values as JSON: UUIDs as strings, decimals as numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value
