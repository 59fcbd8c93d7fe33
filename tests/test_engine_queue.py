"""realtime.engine.PacketQueue keeps asyncio.Queue's behaviour for everything an Engine.IO socket does with it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.engine import PacketQueue

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 9) | st.none()),
        st.just(("get",)),
        st.just(("done",)),
    ),
    max_size=60,
)


def apply(queue: Any, operation: tuple[Any, ...]) -> Any:
    """One operation on either queue; what it returns or raises."""
    try:
        if operation[0] == "put":
            return queue.put_nowait(operation[1])
        if operation[0] == "get":
            return queue.get_nowait()
        return queue.task_done()
    except (asyncio.QueueEmpty, ValueError) as err:
        return type(err)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_it_answers_like_asyncio_queue_for_any_sequence(operations: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        lean, reference = PacketQueue(), asyncio.Queue[Any]()
        for operation in operations:
            assert apply(lean, operation) == apply(reference, operation)
            assert (lean.empty(), lean.qsize()) == (reference.empty(), reference.qsize())
        # join() returns at once exactly when every put item was marked done.
        assert (lean._unfinished == 0) == (reference._unfinished_tasks == 0)

    asyncio.run(run())


async def test_a_waiting_get_is_woken_in_order_and_join_waits_for_task_done() -> None:
    queue = PacketQueue()
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    queue.put_nowait(None)
    assert await first == "a"
    assert await second is None
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    queue.task_done()
    queue.task_done()
    await asyncio.wait_for(joined, 1)


async def test_a_get_cancelled_after_it_was_woken_passes_the_item_on() -> None:
    queue = PacketQueue()
    cancelled, waiting = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("packet")  # wakes the first getter...
    cancelled.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(waiting, 1) == "packet"


async def test_a_get_that_times_out_leaves_no_waiter_behind() -> None:
    queue = PacketQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    assert queue._getters == []
    queue.put_nowait("later")
    assert await asyncio.wait_for(queue.get(), 1) == "later"
