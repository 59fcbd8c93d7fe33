"""The instructor's live course dashboard page.

The page is static HTML: the instructor signs in with the API from the page
(the token stays in sessionStorage), the enrollments come from REST and the
rows update from the ``/dashboard`` namespace. The Socket.IO browser client
is the npm package served under ``/static/vendor/socket.io/``.
"""

from __future__ import annotations

import uuid

import aiohttp_jinja2
from aiohttp import web

from lms.api.problems import NotFound
from lms.appkeys import CONFIG

routes = web.RouteTableDef()

# Our scripts only; styles are inline in the template; the socket and the
# API are same-origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@routes.get("/dashboard/courses/{course_id}")
async def course_dashboard(request: web.Request) -> web.Response:
    try:
        course_id = uuid.UUID(request.match_info["course_id"])
    except ValueError as err:
        raise NotFound("No such course.") from err
    context = {"course_id": str(course_id), "app_name": request.app[CONFIG].app_name}
    response = aiohttp_jinja2.render_template("pages/course_dashboard.html", request, context)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
