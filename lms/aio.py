"""Small asyncio helpers."""

from __future__ import annotations

import asyncio


def raise_if_cancelling(err: BaseException) -> None:
    """Re-raise a cancellation that a library turned into another error.

    redis-py raises ConnectionError when a read is cancelled; a retry loop
    that catches it would swallow the cancel and never stop (shutdown hangs).
    Call this first in such ``except`` blocks.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from err
