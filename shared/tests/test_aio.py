"""Loop helpers: a cancelled wait ends, a helper that swallowed one cancellation still stops."""

from __future__ import annotations

import asyncio

from dalal_shared.aio import cancel_and_wait, wait_event


async def test_wait_event_reports_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancelled_wait_raises_in_the_waiter() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 60))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


async def test_cancel_and_wait_ends_a_task_that_swallowed_a_cancellation() -> None:
    rounds: list[str] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if rounds:
                    raise
                rounds.append("swallowed")  # what wait_for did to our maintenance loop

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, attempt_seconds=0.05), timeout=5)
    assert task.done() and rounds == ["swallowed"]
