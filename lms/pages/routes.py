"""``/``, ``/verify-email``, ``/reset-password``, ``/admin`` and ``/me``: where a person lands.

The pages are static HTML; their script (``/static/account.js``) talks to the
API: sign-in, ``verify-email/confirm`` and ``/request``, ``reset-password``,
``forgot-password``. The token in an email link is read by the script from
the address, sent in a POST body and removed from the address bar; it is
never put into the HTML, and these pages send no Referer.
"""

from __future__ import annotations

from aiohttp import web

from lms import __version__
from lms.appkeys import CONFIG
from lms.pages.render import render_page

routes = web.RouteTableDef()


def has_token(request: web.Request) -> bool:
    """Whether there is a token to try; the API judges it (a bad one gets the page's "expired" state)."""
    return bool(request.query.get("token"))


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    context = {"version": __version__, "docs_enabled": config.http.docs_enabled, "env": config.env}
    return render_page(request, "pages/home.html", context)


@routes.get("/verify-email")
async def verify_email(request: web.Request) -> web.Response:
    return render_page(request, "pages/verify_email.html", {"has_token": has_token(request)}, referrer="no-referrer")


@routes.get("/reset-password")
async def reset_password(request: web.Request) -> web.Response:
    context = {"has_token": has_token(request), "min_length": request.app[CONFIG].auth.password_min_length}
    return render_page(request, "pages/reset_password.html", context, referrer="no-referrer")


@routes.get("/admin")
async def admin_overview(request: web.Request) -> web.Response:
    """The platform overview as charts (sign in as an admin on the page; the API decides)."""
    return render_page(request, "pages/admin.html", {})


@routes.get("/me")
async def my_learning(request: web.Request) -> web.Response:
    """A student's progress, streak and study time as charts (sign in on the page)."""
    return render_page(request, "pages/me.html", {})
