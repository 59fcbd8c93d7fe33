"""The clock deadlines are judged by.

Attempt start, deadline and lateness are computed in Python from this clock,
never from the database's ``now()``, so a test can move time: it stores its
own callable under :data:`CLOCK` before the app starts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

Clock = Callable[[], datetime]

CLOCK: web.AppKey[Clock] = web.AppKey("quizzes_clock")


def utcnow() -> datetime:
    return datetime.now(UTC)


def now(app: web.Application) -> datetime:
    return app.get(CLOCK, utcnow)()
