"""The one bounded wait of the suite: poll a state the system reports until it holds.

Tests wait on an event where there is one (a Socket.IO message, a queue);
where there is none they poll what the system reports (a row, a Redis key,
a process's output, a counter) with :func:`eventually`, or
:func:`eventually_blocking` outside an event loop (fixtures that start
processes, threads). A timeout is a failure that says what was awaited and
what was last seen, never a pass: nothing here proves that something did
*not* happen. A check may raise to fail at once (a process that died).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Generous on purpose: the machine running the suite may be loaded; a
# passing check returns at its first success, so only failures wait this long.
DEFAULT_TIMEOUT = 15.0


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """``check()``'s first truthy value (``check`` may be sync or async); AssertionError after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last seen: {value!r})")
        await asyncio.sleep(interval)


def eventually_blocking(
    check: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT, what: str = "the condition", interval: float = 0.05
) -> T:
    """:func:`eventually` for code that runs outside the event loop (it sleeps the thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last seen: {value!r})")
        time.sleep(interval)
