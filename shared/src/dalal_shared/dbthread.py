"""One thread for a component's database calls.

`asyncio.to_thread` hands each call to whichever pool thread is free, so calls made side by
side (a read's orders placed together) write from several threads at once. On SQLite one
writer holds the lock and the others back off in SQLite's busy handler, which sleeps in steps
of 1, 2, 5, 10 ... ms however soon the lock is free: concurrency made the order path slower.
A `DbThread` runs its calls one after another on one thread, in the order they were asked,
so they never wait on each other's locks, and the work that can overlap (a Kite call) still
does, on other threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DbThread:
    """Runs blocking database calls on one thread of its own (started at the first call)."""

    def __init__(self, name: str = "db") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on the thread, after every call asked before it; the
        caller's context variables (the log context) go with it, as with `to_thread`."""
        return await self.submit(fn, *args, **kwargs)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        """`run`, queued now (its place in the order is taken at this call, not when the
        result is awaited): a caller can take its turn under a lock and wait outside it."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return loop.run_in_executor(self._pool, call)

    def close(self) -> None:
        """Finish the calls asked so far and stop the thread."""
        self._pool.shutdown(wait=True)
