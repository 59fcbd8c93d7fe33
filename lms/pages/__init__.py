"""The HTML pages: their routes, templates (``templates/``) and scripts (``static/``), all in this package."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from lms.pages.routes import routes

log = logging.getLogger(__name__)

PAGES_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PAGES_DIR.parent / "assets" / "node_modules"
# Browser libraries served from npm packages (see lms/assets/package.json).
VENDOR_DIRS = {
    "swagger-ui": ASSETS_DIR / "swagger-ui-dist",
    "socket.io": ASSETS_DIR / "socket.io-client" / "dist",
    "chart.js": ASSETS_DIR / "chart.js" / "dist",
}


def setup_pages(app: web.Application) -> None:
    """The page routes, their templates (aiohttp-jinja2, autoescaped) and ``/static``."""
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(PAGES_DIR / "templates"), autoescape=jinja2.select_autoescape()
    )
    app.router.add_routes(routes)
    app.router.add_static("/static", PAGES_DIR / "static", name="static", append_version=False)
    for name, path in VENDOR_DIRS.items():
        if path.is_dir():
            app.router.add_static(f"/static/vendor/{name}", path)
        else:
            log.info("browser assets missing (%s); run `lms assets`", path)
