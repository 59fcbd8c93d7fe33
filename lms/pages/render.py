"""Rendering a page: its template, the instance's name, and the headers every page sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from lms.appkeys import CONFIG

# Our own scripts only; inline styles; the socket and the API are same-origin.
# Forms are sent by the pages' scripts, never by the browser ('none').
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Pages without any script (certificate verification): nothing but inline styles and data: images.
NO_SCRIPTS_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'"


def render_page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    referrer: str | None = None,
    csp: str = PAGE_CSP,
) -> web.Response:
    """``referrer`` overrides the Referrer-Policy (``no-referrer`` on pages whose URL holds a token)."""
    values = {"app_name": request.app[CONFIG].app_name, **context}
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    if referrer is not None:
        response.headers["Referrer-Policy"] = referrer
    return response
