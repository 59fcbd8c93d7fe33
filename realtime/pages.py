"""The instructor's live course dashboard page.

The page is static HTML: the instructor signs in with the API from the page
(the token stays in sessionStorage), the enrollments come from REST and the
rows update from the ``/dashboard`` namespace. The Socket.IO browser client
is the npm package served under ``/static/vendor/socket.io/``.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from lms.api.problems import NotFound
from lms.pages.render import render_page

routes = web.RouteTableDef()


@routes.get("/dashboard/courses/{course_id}")
async def course_dashboard(request: web.Request) -> web.Response:
    try:
        course_id = uuid.UUID(request.match_info["course_id"])
    except ValueError as err:
        raise NotFound("No such course.") from err
    return render_page(request, "pages/course_dashboard.html", {"course_id": str(course_id)})
