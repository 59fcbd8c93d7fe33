"""The live pages: ``/play`` (players, on a phone) and ``/host/{session_id}`` (the host's screen).

Static HTML from templates; everything live goes through the ``/live``
namespace with the npm Socket.IO client served under ``/static/vendor/``.
Hosts sign in from the page (the access token stays in sessionStorage).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from lms.api.problems import NotFound
from lms.pages.render import render_page

routes = web.RouteTableDef()


@routes.get("/play")
async def play(request: web.Request) -> web.Response:
    pin = request.query.get("pin", "")
    return render_page(request, "pages/play.html", {"pin": pin if pin.isdigit() and len(pin) == 6 else ""})


@routes.get("/host/{session_id}")
async def host(request: web.Request) -> web.Response:
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError as err:
        raise NotFound("No such live session.") from err
    return render_page(request, "pages/host.html", {"session_id": str(session_id)})
