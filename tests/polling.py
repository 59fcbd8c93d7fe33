"""The one bounded wait of the suite: poll a state the system reports until it holds.

Tests wait on an event where there is one (a Socket.IO message, a process's
output line); where there is none they poll what the system reports (a row,
a Redis key, a counter) with :func:`eventually`. A timeout is a failure that
says what was awaited and what was last seen, never a pass: nothing here
proves that something did *not* happen.
"""

from __future__ import annotations

import asyncio
import inspect
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
