"""asyncio helpers the service loops share.

`wait_event` replaces `asyncio.wait_for(event.wait(), timeout)` in loops that must stop when
cancelled: on Python 3.11, `wait_for` can swallow a cancellation that arrives as the inner wait
finishes (CPython gh-86296), and a loop that swallowed it keeps running while its owner awaits it
forever (seen: a bus consumer stuck after a read error, waiting on its maintenance task).
`asyncio.wait` never swallows the caller's cancellation.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(seconds, 0.0))
    finally:
        if not waiter.done():
            waiter.cancel()
    return event.is_set()


async def cancel_and_wait(task: asyncio.Task[object], *, attempt_seconds: float = 1.0) -> None:
    """Cancel `task` and wait until it has ended, cancelling again should it swallow one."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=attempt_seconds)
    if not task.cancelled():
        task.exception()  # retrieved: an error of a cancelled helper is not "never retrieved"
