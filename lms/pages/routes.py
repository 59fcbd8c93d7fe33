"""Every HTML page of the platform: where a person lands, the dashboards, the live quiz, verification, API docs.

The pages are static HTML from ``lms/pages/templates`` with their scripts in
``lms/pages/static`` (served under ``/static/``); the scripts talk to the
REST API and the Socket.IO namespaces. Browser libraries come from npm
(``lms/assets``) under ``/static/vendor/``. Nothing here reads the database
except the verification page, which shows what the public JSON route says.

- ``/``, ``/verify-email``, ``/reset-password`` (``account.js``): sign-in,
  ``verify-email/confirm`` and ``/request``, ``reset-password``,
  ``forgot-password``. The token in an email link is read by the script
  from the address, sent in a POST body and removed from the address bar;
  it is never put into the HTML, and these pages send no Referer.
- ``/admin``, ``/me`` (``analytics_pages.js``): analytics as charts.
- ``/dashboard/courses/{id}`` (``dashboard.js``): an instructor's live course dashboard.
- ``/play``, ``/host/{session_id}`` (``live_*.js``): a live quiz's players and host.
- ``/verify/{number}``: a certificate's public verification, for people.
- ``/api/docs`` (``docs.js``): Swagger UI over the OpenAPI document.

Pages where a visitor signs in keep the token in ``sessionStorage``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from lms import __version__
from lms.api.problems import NotFound, Problem
from lms.appkeys import CONFIG, DB
from lms.certificates.service import lookup
from lms.pages.render import NO_SCRIPTS_CSP, render_page

routes = web.RouteTableDef()


def has_token(request: web.Request) -> bool:
    """Whether there is a token to try; the API judges it (a bad one gets the page's "expired" state)."""
    return bool(request.query.get("token"))


def path_id(request: web.Request, name: str, what: str) -> str:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError as err:
        raise NotFound(f"No such {what}.") from err


# --- where a person lands ----------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    context = {"version": __version__, "docs_enabled": config.http.docs_enabled, "env": config.env}
    return render_page(request, "home.html", context)


@routes.get("/verify-email")
async def verify_email(request: web.Request) -> web.Response:
    return render_page(request, "verify_email.html", {"has_token": has_token(request)}, referrer="no-referrer")


@routes.get("/reset-password")
async def reset_password(request: web.Request) -> web.Response:
    context = {"has_token": has_token(request), "min_length": request.app[CONFIG].auth.password_min_length}
    return render_page(request, "reset_password.html", context, referrer="no-referrer")


# --- dashboards and analytics ------------------------------------------------


@routes.get("/admin")
async def admin_overview(request: web.Request) -> web.Response:
    """The platform overview as charts (sign in as an admin on the page; the API decides)."""
    return render_page(request, "admin.html", {})


@routes.get("/me")
async def my_learning(request: web.Request) -> web.Response:
    """A student's progress, streak and study time as charts (sign in on the page)."""
    return render_page(request, "me.html", {})


@routes.get("/dashboard/courses/{course_id}")
async def course_dashboard(request: web.Request) -> web.Response:
    """Enrollments from REST, rows updated live from ``/dashboard``."""
    return render_page(request, "course_dashboard.html", {"course_id": path_id(request, "course_id", "course")})


# --- live quizzes ------------------------------------------------------------


@routes.get("/play")
async def play(request: web.Request) -> web.Response:
    """Players, on a phone: join with the pin, answer, see the result and rank."""
    pin = request.query.get("pin", "")
    return render_page(request, "play.html", {"pin": pin if pin.isdigit() and len(pin) == 6 else ""})


@routes.get("/host/{session_id}")
async def host(request: web.Request) -> web.Response:
    """The host's screen: lobby, countdown, answer count, distribution, leaderboard."""
    session_id = path_id(request, "session_id", "live session")
    return render_page(request, "host.html", {"session_id": session_id})


# --- certificates ------------------------------------------------------------


@routes.get("/verify/{number}")
async def verify_certificate(request: web.Request) -> web.Response:
    """The human side of verification: the same answer as ``/api/v1/certificates/verify/{number}``, as a page."""
    number = request.match_info["number"]
    context: dict[str, Any] = {"number": number, "certificate": None}
    status = 200
    try:
        context["certificate"] = await lookup(request.app[DB], number)
    except Problem as problem:
        context["problem"] = (
            "No certificate has this number." if problem.status == 404 else problem.detail or "Not a valid number."
        )
        status = problem.status
    return render_page(request, "verify.html", context, status=status, csp=NO_SCRIPTS_CSP)


# --- API docs ----------------------------------------------------------------


@routes.get("/api/docs")
async def docs(request: web.Request) -> web.Response:
    if not request.app[CONFIG].http.docs_enabled:
        raise NotFound("API docs are disabled here.")
    return render_page(request, "docs.html", {})
