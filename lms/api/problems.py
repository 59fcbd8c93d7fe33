"""Domain errors and their one rendering: RFC 9457 problem documents.

Handlers raise :class:`Problem` subclasses (``NotFound``, ``Conflict`` ...);
:func:`error_middleware` turns them, aiohttp's own HTTP errors and anything
unexpected into ``application/problem+json``. Unknown errors are logged with
the request id and answered with a generic 500 that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, TypedDict

from aiohttp import web
from redis.exceptions import RedisError

from lms.appkeys import REQUEST_ID
from lms.db import DatabaseUnavailable, StatementTimeout

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://lms.dev/problems/"


class FieldError(TypedDict):
    field: str
    message: str


class Problem(Exception):
    """An error a client can act on. Subclasses fix the status and type."""

    status: int = 400
    type_slug: str = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
        type_slug: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.default_title())
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = headers or {}
        self.title = title or self.default_title()
        self.type_slug = type_slug or self.type_slug
        self.extra = extra

    @classmethod
    def default_title(cls) -> str:
        return HTTPStatus(cls.status).phrase

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.type_slug, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(Problem):
    status, type_slug = 400, "bad-request"


class Unauthorized(Problem):
    status, type_slug = 401, "unauthorized"

    def __init__(self, detail: str | None = "Missing, invalid or expired credentials.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="lms"'})
        super().__init__(detail, **kw)


class PaymentRequired(Problem):
    status, type_slug = 402, "payment-required"


class Forbidden(Problem):
    status, type_slug = 403, "forbidden"


class NotFound(Problem):
    status, type_slug = 404, "not-found"


class Conflict(Problem):
    status, type_slug = 409, "conflict"


class PayloadTooLarge(Problem):
    status, type_slug = 413, "payload-too-large"


class UnsupportedMediaType(Problem):
    status, type_slug = 415, "unsupported-media-type"


class ValidationFailed(Problem):
    status, type_slug = 422, "validation-error"

    def __init__(self, detail: str | None = "The request is not valid.", **kw: Any) -> None:
        super().__init__(detail, **kw)


class TooManyRequests(Problem):
    status, type_slug = 429, "rate-limited"


class InternalError(Problem):
    status, type_slug = 500, "internal-error"


class ServiceUnavailable(Problem):
    """A dependency (PostgreSQL, Redis) did not answer: nothing is wrong with the request; retry it."""

    status, type_slug = 503, "service-unavailable"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        super().__init__(detail, **kw)


# The wait a 503 suggests: dependency outages are short and a retry is cheap.
RETRY_AFTER_SECONDS = 5


def problem_response(problem: Problem, request: web.Request | None = None) -> web.Response:
    instance = request.path if request is not None else None
    body = problem.to_dict(instance)
    request_id = request.get(REQUEST_ID) if request is not None else None
    if request_id:
        body["request_id"] = request_id
    return web.Response(
        status=problem.status,
        body=json.dumps(body, default=str).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def from_http_exception(exc: web.HTTPException) -> Problem:
    """aiohttp raises its own HTTP errors (routing, body size): same shape for all."""
    slug = {
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
    }.get(exc.status, HTTPStatus(exc.status).phrase.lower().replace(" ", "-"))
    detail = {
        404: "No resource at this path.",
        405: "This method is not allowed on this resource.",
        413: "The request body is too large.",
    }.get(exc.status, exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None)
    problem = Problem(detail, title=HTTPStatus(exc.status).phrase, type_slug=slug)
    problem.status = exc.status
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    problem.headers = headers
    return problem


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Problem as problem:
        return problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and 204s raised as exceptions pass through
            raise
        return problem_response(from_http_exception(exc), request)
    except StatementTimeout:
        log.warning("statement timeout on %s %s", request.method, request.path)
        return problem_response(ServiceUnavailable("The database took too long to answer; try again."), request)
    except DatabaseUnavailable:
        log.warning("database unavailable on %s %s", request.method, request.path, exc_info=True)
        return problem_response(ServiceUnavailable("The database is unavailable; try again shortly."), request)
    except RedisError as err:
        log.warning("redis unavailable on %s %s: %s", request.method, request.path, err)
        return problem_response(
            ServiceUnavailable("A service this request needs is unavailable; try again shortly."), request
        )
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request.get(REQUEST_ID))
        return problem_response(
            InternalError("An unexpected error occurred. Quote the request id when reporting it."), request
        )
