"""The OpenAPI 3.1 document, generated from the route table and its models.

Every route registered with :func:`lms.api.endpoint.endpoint` appears with its
request body, query parameters, response model and error responses, so the
document stays true as routes are added.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from lms.api.endpoint import Operation, operation_of

REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem document",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _schema_for(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A schema for a model or any annotated type, collecting $defs into ``defs``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _model_ref(tp, "serialization", defs)
    schema = TypeAdapter(tp).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    defs.update(schema.pop("$defs", {}))
    return schema


def _model_ref(
    model: type[BaseModel], mode: Literal["validation", "serialization"], defs: dict[str, Any]
) -> dict[str, Any]:
    # Pydantic names the component (Page[UserOut] becomes Page_UserOut_): use its reference.
    refs, top = models_json_schema([(model, mode)], ref_template=REF_TEMPLATE)
    defs.update(top.get("$defs", {}))
    return dict(refs[(model, mode)])


def _input_schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    return _model_ref(model, "validation", defs)


def _query_parameters(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _operation(op: Operation, path: str, defs: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "operationId": None, "tags": list(op.tags)}
    if op.description:
        doc["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in _PARAM.findall(path)
    ]
    if op.query is not None:
        params += _query_parameters(op.query, defs)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        media = {
            "json": "application/json",
            "form": "application/x-www-form-urlencoded",
            "multipart": "multipart/form-data",
        }[op.body_format]
        doc["requestBody"] = {"required": True, "content": {media: {"schema": _input_schema(op.body, defs)}}}
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None and op.status != 204:
        ok["content"] = {op.response_content_type: {"schema": _schema_for(op.response, defs)}}
    responses[str(op.status)] = ok
    error_codes = set(op.errors)
    if op.body is not None or op.query is not None:
        error_codes |= {422}
    if op.body is not None and op.body_format == "json":
        error_codes |= {413, 415}
    if op.security:
        error_codes |= {401}
    for code in sorted(error_codes):
        responses[str(code)] = {
            "description": HTTPStatus(code).phrase,
            "content": {"application/problem+json": {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}}},
        }
    doc["responses"] = responses
    if op.security:
        doc["security"] = [{scheme: []} for scheme in op.security]
    return doc


def build_openapi(app: web.Application, *, title: str, version: str, server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    defs: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    for route in app.router.routes():
        op = operation_of(route.handler)
        resource = route.resource
        if op is None or resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        method = route.method.lower()
        entry = _operation(op, path, defs)
        entry["operationId"] = f"{method}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}"
        paths.setdefault(path, {})[method] = entry
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(defs.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
