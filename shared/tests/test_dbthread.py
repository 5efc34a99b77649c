"""`DbThread`: a component's database calls on one thread, in the order they were asked."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from dalal_shared.dbthread import DbThread

REQUEST = contextvars.ContextVar("REQUEST", default="none")


async def test_calls_asked_together_run_one_after_another_in_order_on_one_thread() -> None:
    db = DbThread("t")
    running = 0
    overlapped = False
    seen: list[tuple[int, str]] = []

    def call(n: int) -> int:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        time.sleep(0.002)  # long enough for a second thread to start one beside it
        seen.append((n, threading.current_thread().name))
        running -= 1
        return n * 10

    results = await asyncio.gather(*(db.run(call, n) for n in range(20)))

    assert results == [n * 10 for n in range(20)]
    assert [n for n, _ in seen] == list(range(20))
    assert len({name for _, name in seen}) == 1
    assert seen[0][1] != threading.current_thread().name
    assert not overlapped
    db.close()


async def test_the_callers_context_goes_with_the_call_and_errors_come_back() -> None:
    db = DbThread("t")
    REQUEST.set("order-7")

    def read() -> str:
        return REQUEST.get()

    def fail() -> None:
        raise ValueError("bad row")

    assert await db.run(read) == "order-7"
    with pytest.raises(ValueError, match="bad row"):
        await db.run(fail)
    assert await db.run(read) == "order-7"  # the thread survives a failed call
    db.close()
