"""One thread for a component's database calls.

`asyncio.to_thread` hands each call to whichever pool thread is free, so calls made side by
side (a read's orders placed together) write from several threads at once. On SQLite one
writer holds the lock and the others back off in SQLite's busy handler, which sleeps in steps
of 1, 2, 5, 10 ... ms however soon the lock is free: concurrency made the order path slower.
A `DbThread` runs its calls one after another on one thread, in the order they were asked,
so they never wait on each other's locks, and the work that can overlap (a Kite call) still
does, on other threads. `Checkpoints` starts a store's SQLite checkpoints off its hot path.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from dalal_shared.logging import get_logger

P = ParamSpec("P")
T = TypeVar("T")
log = get_logger(__name__)


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


class Checkpoints:
    """SQLite checkpoints of a store opened with `own_checkpoints` (`dalal_shared.db`), asked
    for when its owner's hot path is done: `soon()` runs `run` (the store's `checkpoint`: file
    I/O, two fsyncs) in a worker thread, not on the store's own `DbThread` (the next write
    need not queue behind it; SQLite lets a passive checkpoint and a writer go side by side).
    At most one every `interval` seconds: one asked for sooner runs when the interval is up
    (so the last writes of a burst are checkpointed too), one asked for while another runs
    follows it. Not awaited by the caller. A failure is logged and the next one tries again;
    SQLite's own checkpoint at `db.DEFERRED_CHECKPOINT_PAGES` stays the backstop."""

    def __init__(self, run: Callable[[], None], *, interval: float, name: str) -> None:
        self.run, self.interval, self.name = run, interval, name
        self._started = -math.inf  # monotonic time the last one started
        self._task: asyncio.Task[None] | None = None
        self._running = False  # the task's checkpoint is under way (no longer waiting)
        self._again = False  # asked for while one ran: another after it

    def soon(self) -> asyncio.Task[None] | None:
        """Ask for one: the task that will run it, or None when one that has not started yet
        will (it sees these writes too) or one is running (another follows it)."""
        if self._task is not None and not self._task.done():
            if self._running:
                self._again = True
            return None
        self._task = asyncio.get_running_loop().create_task(self._checkpoints())
        return self._task

    async def _checkpoints(self) -> None:
        while True:
            wait = self._started + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._started, self._running, self._again = time.monotonic(), True, False
            try:
                await asyncio.to_thread(self.run)
            except Exception as exc:
                log.warning("db.checkpoint_failed", store=self.name, error=repr(exc))
            finally:
                self._running = False
            if not self._again:
                return
