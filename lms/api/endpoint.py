"""Handlers declare what they take and give; validation and docs share it.

::

    @routes.post("/api/v1/courses")
    @endpoint(summary="Create a course", body=CourseIn, response=CourseOut, status=201, tags=["courses"])
    async def create_course(request: web.Request, body: CourseIn) -> dict[str, Any]:
        ...

The decorator parses and validates the body (JSON, or a form) and the query
string with pydantic (one validation library everywhere), renders the result
through the response model (so a handler cannot leak a field the model does
not declare), and records an :class:`Operation` that :mod:`lms.api.openapi`
turns into the OpenAPI document.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from lms.api.problems import FieldError, NotFound, Problem, UnsupportedMediaType, ValidationFailed
from lms.text import depth as text_depth
from lms.text import first_unstorable

M = TypeVar("M", bound=BaseModel)
Guard = Callable[[web.Request], Awaitable[None]]

OPERATION_ATTR = "__lms_operation__"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str | None = None
    body: type[BaseModel] | None = None
    body_format: Literal["json", "form", "multipart"] = "json"
    body_required: bool = True
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    # Set by the auth layer: "bearer" when the route needs an access token.
    security: tuple[str, ...] = ()
    guards: tuple[Guard, ...] = field(default=(), compare=False)
    response_content_type: str = "application/json"
    # Responses carry credentials (RFC 6749 5.1): no cache may keep them, errors included.
    no_store: bool = False


def endpoint(
    *,
    summary: str,
    description: str | None = None,
    body: type[BaseModel] | None = None,
    body_format: Literal["json", "form", "multipart"] = "json",
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    tags: Sequence[str] = (),
    errors: Sequence[int] = (),
    security: Sequence[str] = (),
    guards: Sequence[Guard] = (),
    response_content_type: str = "application/json",
    no_store: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    # Guards say what they need (a bearer token) and how they refuse (401, 403).
    security = tuple(security) or tuple(dict.fromkeys(s for g in guards for s in getattr(g, "security", ())))
    errors = tuple(dict.fromkeys([*errors, *(e for g in guards for e in getattr(g, "errors", ()))]))
    op = Operation(
        summary=summary,
        description=description,
        body=body,
        body_format=body_format,
        body_required=body_required,
        query=query,
        response=response,
        status=status,
        tags=tuple(tags),
        errors=errors,
        security=security,
        guards=tuple(guards),
        response_content_type=response_content_type,
        no_store=no_store,
    )
    adapter = TypeAdapter(response) if response is not None else None

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                response = await respond(request)
            except Problem as problem:
                if op.no_store:
                    problem.headers = {**problem.headers, **NO_STORE}
                raise
            if op.no_store:
                response.headers.update(NO_STORE)
            return response

        async def respond(request: web.Request) -> web.StreamResponse:
            refuse_unstorable_path(request)
            for guard in op.guards:
                await guard(request)
            kwargs: dict[str, Any] = {}
            if op.body is not None:
                if op.body_format == "json":
                    kwargs["body"] = await read_json(request, op.body, required=op.body_required)
                elif op.body_format == "form":
                    kwargs["body"] = await read_form(request, op.body)
            if op.query is not None:
                kwargs["query"] = parse_query(request, op.query)
            result = await fn(request, **kwargs)
            return render(result, op.status, adapter)

        setattr(handler, OPERATION_ATTR, op)
        return handler

    return decorate


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, OPERATION_ATTR, None)


def render(result: Any, status: int, adapter: TypeAdapter[Any] | None) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204 if status in (200, 204) else status)
    if adapter is not None:
        body = adapter.dump_json(adapter.validate_python(result, from_attributes=True))
    elif isinstance(result, BaseModel):
        body = result.model_dump_json().encode()
    else:
        body = json.dumps(result, default=str).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def validation_errors(err: ValidationError, prefix: str = "") -> list[FieldError]:
    out: list[FieldError] = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"] if p not in ("body",))
        message = e["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append({"field": (prefix + loc) or "body", "message": message})
    return out


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


# Deeper than any body of this API nests (metadata included); decoding and
# validating pathological nesting would exhaust the stack.
MAX_JSON_DEPTH = 32


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON cannot carry it back, nor can jsonb store it
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(raw: bytes) -> Any:
    """The JSON value of a body, or 422 that says what is wrong without the decoder's internals."""
    try:
        return json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        message = f"{err.msg} (line {err.lineno}, column {err.colno})"
    except UnicodeDecodeError:
        message = "not UTF-8 text"
    except RecursionError:
        message = f"nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError:  # an integer of thousands of digits, 1e999, NaN, Infinity
        message = "a number is too large, or not finite"
    raise ValidationFailed("The request body is not valid JSON.", errors=[{"field": "body", "message": message}])


def refuse_unstorable(data: Any, detail: str) -> None:
    """422 naming the first field whose text cannot be stored (NUL, lone surrogates)."""
    found = first_unstorable(data)
    if found is not None:
        where, reason = found
        raise ValidationFailed(detail, errors=[{"field": where or "body", "message": reason}])


async def read_body(request: web.Request) -> bytes:
    """The whole body (however it arrives: pieces, chunks), bounded while read.

    :func:`lms.api.middlewares.body_size_limit` sets the bound
    (``http.max_body_bytes``) and answers 413 past it.
    """
    return await request.read()


async def read_json(request: web.Request, model: type[M], *, required: bool = True) -> M:
    if not required and not request.body_exists:
        return validate(model, {})
    if not _is_json(request.content_type):
        raise UnsupportedMediaType(
            f"Send the body as application/json (got {request.content_type or 'nothing'}).",
            supported=["application/json"],
        )
    raw = await read_body(request)
    if not raw.strip():
        raise ValidationFailed(
            "The request body is empty; a JSON object is required.", errors=[{"field": "body", "message": "required"}]
        )
    data = decode_json(raw)
    if text_depth(data) > MAX_JSON_DEPTH:
        raise ValidationFailed(
            "The request body is nested too deeply.",
            errors=[{"field": "body", "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}],
        )
    refuse_unstorable(data, "The request body is not valid.")
    return validate(model, data)


async def read_form(request: web.Request, model: type[M]) -> M:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedMediaType(
            "Send the body as application/x-www-form-urlencoded.", supported=["application/x-www-form-urlencoded"]
        )
    try:
        form = await request.post()
    except ValueError as err:  # not UTF-8, or a multipart body that does not parse
        raise ValidationFailed(
            "The form cannot be read.", errors=[{"field": "body", "message": "not a UTF-8 form"}]
        ) from err
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    refuse_unstorable(fields, "The form is not valid.")
    return validate(model, fields)


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The request body must be a JSON object.", errors=[{"field": "body", "message": "expected an object"}]
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValidationFailed(errors=validation_errors(err)) from err


def parse_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        values = request.query.getall(key, [])
        if not values:
            continue
        annotation = str(info.annotation)
        data[key] = values if ("list" in annotation or "tuple" in annotation) else values[-1]
    refuse_unstorable(data, "The query string is not valid.")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValidationFailed("The query string is not valid.", errors=validation_errors(err)) from err


def refuse_unstorable_path(request: web.Request) -> None:
    """A path segment with text no row can hold names nothing: 404, before any query."""
    if request.match_info and first_unstorable(dict(request.match_info)) is not None:
        raise NotFound("No resource at this path.")


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    """A UUID path parameter; anything else cannot name a resource: 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except (KeyError, ValueError):
        raise NotFound("No resource at this path.") from None
