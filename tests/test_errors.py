"""Every error of the API is a problem document; nothing bad in gets a 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from lms.api.endpoint import endpoint
from lms.app import create_app
from lms.config import Settings

PROBLEM = "application/problem+json"


class Echo(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)


@endpoint(summary="echo", body=Echo, response=Echo, status=201)
async def echo(request: web.Request, body: Echo) -> Echo:
    return body


@endpoint(summary="page", query=Page, response=Page)
async def page(request: web.Request, query: Page) -> Page:
    return query


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


@pytest.fixture
async def api(aiohttp_client: Any, config: Settings) -> Any:
    app = create_app(config)
    app.router.add_post("/api/v1/echo", echo)
    app.router.add_get("/api/v1/page", page)
    app.router.add_get("/api/v1/boom", boom)
    return await aiohttp_client(app)


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["status"] == status and body["type"] and body["title"]
    return body


async def test_valid_body_is_echoed(api: Any) -> None:
    response = await api.post("/api/v1/echo", json={"name": "a", "count": 2})
    assert response.status == 201 and await response.json() == {"name": "a", "count": 2}


async def test_unknown_path_is_404_problem(api: Any) -> None:
    body = await problem_of(await api.get("/api/v1/nothing-here"), 404)
    assert body["instance"] == "/api/v1/nothing-here"


async def test_wrong_method_is_405_problem_with_allow(api: Any) -> None:
    response = await api.delete("/api/v1/echo")
    await problem_of(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_declared_oversize_body_is_413(api: Any) -> None:
    await problem_of(
        await api.post("/api/v1/echo", data=b"x" * 70_000, headers={"Content-Type": "application/json"}), 413
    )


async def test_chunked_oversize_body_is_413(api: Any) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    await problem_of(await api.post("/api/v1/echo", data=chunks(), headers={"Content-Type": "application/json"}), 413)


async def test_wrong_media_type_is_415(api: Any) -> None:
    await problem_of(await api.post("/api/v1/echo", data="name=a", headers={"Content-Type": "text/plain"}), 415)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_json_is_422(api: Any, raw: bytes) -> None:
    body = await problem_of(await api.post("/api/v1/echo", data=raw, headers={"Content-Type": "application/json"}), 422)
    assert body["errors"]


async def test_invalid_fields_are_422_with_field_errors(api: Any) -> None:
    body = await problem_of(await api.post("/api/v1/echo", json={"name": "", "count": -1}), 422)
    assert {e["field"] for e in body["errors"]} == {"name", "count"}


async def test_invalid_query_is_422(api: Any) -> None:
    body = await problem_of(await api.get("/api/v1/page?limit=1000"), 422)
    assert body["errors"][0]["field"] == "limit"
    assert (await (await api.get("/api/v1/page?limit=5")).json()) == {"limit": 5}


async def test_unknown_error_is_a_generic_500_with_request_id(api: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = await api.get("/api/v1/boom", headers={"X-Request-ID": "req-123"})
        body = await problem_of(response, 500)
    assert body["request_id"] == "req-123" and response.headers["X-Request-ID"] == "req-123"
    assert "secret internals" not in str(body)
    assert any("req-123" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_every_response_carries_a_request_id(api: Any) -> None:
    response = await api.get("/api/v1/health")
    assert len(response.headers["X-Request-ID"]) >= 8
