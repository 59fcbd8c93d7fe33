"""The pages a person lands on: `/`, `/verify-email`, `/reset-password` (HTTP level; Chromium in test_account_pages)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lms import __version__
from lms.app import create_app
from tests.conftest import Servers, make_config

PAGES = ["/", "/verify-email", "/reset-password"]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_html_with_their_headers(client: TestClient, path: str) -> None:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert '<script src="/static/account.js"></script>' in await response.text()
    head = await client.head(path)
    assert head.status == 200


async def test_home_says_what_this_is_and_where_to_go(client: TestClient) -> None:  # type: ignore[type-arg]
    body = await (await client.get("/")).text()
    assert f"version {__version__}" in body
    for link in ('href="/play"', 'href="/api/docs"'):
        assert link in body
    assert 'id="signin"' in body and 'id="forgot-link"' in body
    assert "lms up --demo" in body


async def test_home_links_no_docs_where_they_are_disabled(aiohttp_client: Any, servers: Servers) -> None:
    client = await aiohttp_client(create_app(make_config(servers, http={"docs_enabled": False})))
    body = await (await client.get("/")).text()
    assert 'href="/api/docs"' not in body and 'href="/play"' in body


@pytest.mark.parametrize("path", ["/verify-email", "/reset-password"])
async def test_link_pages_keep_the_token_out_of_the_html_and_send_no_referer(
    client: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.secret-part-of-the-token.signature"
    response = await client.get(path, params={"token": token})
    body = await response.text()
    assert response.status == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "secret-part-of-the-token" not in body
    assert 'data-has-token="yes"' in body
    without = await (await client.get(path)).text()
    assert 'data-has-token="no"' in without


async def test_reset_page_states_the_configured_policy(aiohttp_client: Any, servers: Servers) -> None:
    client = await aiohttp_client(create_app(make_config(servers, auth={"password_min_length": 14})))
    body = await (await client.get("/reset-password", params={"token": "x"})).text()
    assert "At least 14 characters" in body


async def test_the_pages_script_is_served(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/static/account.js")
    assert response.status == 200
    assert "verify-email/confirm" in await response.text()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(min_size=1, max_size=3000))
async def test_any_token_gets_the_page_and_is_never_echoed(client: TestClient, token: str) -> None:  # type: ignore[type-arg]
    for path in ("/verify-email", "/reset-password"):
        response = await client.get(path, params={"token": token, "other": token})
        assert response.status == 200, await response.text()
        body = await response.text()
        if len(token) >= 12:  # short strings may occur in the page by chance
            assert token not in body


async def test_a_request_line_beyond_aiohttps_limit_is_refused_not_crashed(client: TestClient) -> None:  # type: ignore[type-arg]
    # aiohttp's parser refuses request lines over 8190 bytes itself, before any handler.
    response = await client.get("/verify-email", params={"token": "x" * 20_000})
    assert response.status == 400
    assert (await client.get("/verify-email", params={"token": "x" * 7000})).status == 200
