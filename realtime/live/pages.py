"""The live pages: ``/play`` (players, on a phone) and ``/host/{session_id}`` (the host's screen).

Static HTML from templates; everything live goes through the ``/live``
namespace with the npm Socket.IO client served under ``/static/vendor/``.
Hosts sign in from the page (the access token stays in sessionStorage).
"""

from __future__ import annotations

import uuid

import aiohttp_jinja2
from aiohttp import web

from lms.api.problems import NotFound
from lms.appkeys import CONFIG

routes = web.RouteTableDef()

# Our own scripts only; inline styles; the socket and the API are same-origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _page(request: web.Request, template: str, context: dict[str, str]) -> web.Response:
    context = {"app_name": request.app[CONFIG].app_name} | context
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/play")
async def play(request: web.Request) -> web.Response:
    pin = request.query.get("pin", "")
    return _page(request, "pages/play.html", {"pin": pin if pin.isdigit() and len(pin) == 6 else ""})


@routes.get("/host/{session_id}")
async def host(request: web.Request) -> web.Response:
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError as err:
        raise NotFound("No such live session.") from err
    return _page(request, "pages/host.html", {"session_id": str(session_id)})
