"""Liveness of a process's long-lived tasks: who is alive, who is wedged, who is behind.

Every long-lived task of a service (each bus consumer, the lease loop, the data feed, an outbox
relay, an order tracker) registers here and beats while it makes progress. `/readyz` asks the
registry (`TaskRegistry.check`) and is red while a registered task

* is **dead**: its asyncio task ended without being stopped or cancelled on purpose,
* is **wedged**: no heartbeat for `stale_after_seconds` (a handler stuck on a socket, a loop
  blocked on a lock), or
* reports a **problem** (a consumer whose pending entries or lag stayed past their bound, a
  task in back-off after a failure).

A task stopped on purpose (`close()`, or its task cancelled) leaves the registry: a broker
replica that lost its lease and stopped its consumers is not unhealthy.

Registrations are kept per event loop: a process runs one loop, and tests that run many loops
in one process never see each other's tasks.

Metrics (one series per task name; names are low-cardinality, e.g. `bus:broker`,
`lease:broker-order-placer`, `feed`): `dalal_task_up{task}` (1 healthy, 0 dead, wedged or
troubled), `dalal_task_heartbeat_age_seconds{task}`, `dalal_task_restarts_total{task}`
(a supervised task restarted after an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dalal_shared.errors import DalalError
from dalal_shared.logging import get_logger

log = get_logger(__name__)

DEFAULT_STALE_AFTER_SECONDS = 60.0

RESTARTS = Counter(
    "dalal_task_restarts_total",
    "Times a supervised long-lived task failed and was restarted after a back-off",
    ["task"],
)


class TaskNotHealthy(DalalError):
    """Raised by `TaskRegistry.check` (readiness) and `check_alive` (liveness) naming every
    unhealthy task; an HTTP route that lets it through answers 503 `task_unhealthy`."""

    code = "task_unhealthy"
    status_code = 503


@dataclass(frozen=True)
class TaskStatus:
    name: str
    state: str  # running | backoff | dead | wedged | troubled
    healthy: bool
    heartbeat_age_seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "state": self.state,
            "healthy": self.healthy,
            "heartbeat_age_seconds": round(self.heartbeat_age_seconds, 3),
            "detail": self.detail,
        }


class TaskHealth:
    """One registered task's handle: `beat()` on progress, `problem()` to report trouble,
    `close()` when stopped on purpose."""

    def __init__(
        self,
        registry: TaskRegistry,
        name: str,
        stale_after_seconds: float,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any] | None,
    ):
        self._registry = registry
        self.name = name
        self.stale_after_seconds = stale_after_seconds
        self._loop = weakref.ref(loop)
        self._task = weakref.ref(task) if task is not None else None
        self.last_beat = time.monotonic()
        self.state = "running"
        self.detail = ""
        self.closed = False
        self._dead: str | None = None
        self._problem: str | None = None

    def beat(self) -> None:
        """The task made progress (or is idle and responsive)."""
        self.last_beat = time.monotonic()
        if self.state == "backoff":
            self.state, self.detail = "running", ""

    def backoff(self, error: str) -> None:
        """The task failed and waits before retrying: unhealthy until it beats again. It still
        counts as alive (no stale verdict) while it waits."""
        self.last_beat = time.monotonic()
        self.state, self.detail = "backoff", error[:300]

    def problem(self, detail: str | None) -> None:
        """Report (or, with None, clear) a condition that makes the task unhealthy although
        it runs, such as a backlog past its bound."""
        self._problem = detail[:300] if detail else None

    def dead(self, reason: str) -> None:
        """The task ended without being asked to: it stays registered, unhealthy."""
        self._dead = reason[:300]

    def close(self) -> None:
        """Stopped on purpose: leave the registry."""
        if not self.closed:
            self.closed = True
            self._registry._remove(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop()

    def status(self, now: float) -> TaskStatus:
        age = max(0.0, now - self.last_beat)
        if self._dead is not None:
            return TaskStatus(self.name, "dead", False, age, self._dead)
        task = self._task() if self._task is not None else None
        if self._task is not None and (task is None or task.done()):
            return TaskStatus(self.name, "dead", False, age, "its task ended without stopping")
        if self.state == "backoff":
            return TaskStatus(self.name, "backoff", False, age, self.detail)
        if age > self.stale_after_seconds:
            return TaskStatus(self.name, "wedged", False, age, f"no heartbeat for {age:.0f} s")
        if self._problem is not None:
            return TaskStatus(self.name, "troubled", False, age, self._problem)
        return TaskStatus(self.name, "running", True, age)


class TaskRegistry:
    """The long-lived tasks of this process (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: list[TaskHealth] = []

    def register(
        self,
        name: str,
        *,
        stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
        track_task: bool = True,
    ) -> TaskHealth:
        """Register the calling task under `name` (made unique with `#2`, `#3` ... within the
        loop). With `track_task` the registration turns dead if the calling asyncio task ends
        without `close()`."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task() if track_task else None
        with self._lock:
            self._prune()
            taken = {t.name for t in self._tasks if t.loop is loop}
            unique, n = name, 1
            while unique in taken:
                n += 1
                unique = f"{name}#{n}"
            handle = TaskHealth(self, unique, stale_after_seconds, loop, task)
            self._tasks.append(handle)
        return handle

    def _remove(self, handle: TaskHealth) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._tasks.remove(handle)

    def _prune(self) -> None:
        self._tasks = [
            t for t in self._tasks if (loop := t.loop) is not None and not loop.is_closed()
        ]

    def _current(self) -> list[TaskHealth]:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a metrics scrape from a thread: every live loop's tasks
            loop = None
        with self._lock:
            self._prune()
            return [t for t in self._tasks if loop is None or t.loop is loop]

    def statuses(self) -> list[TaskStatus]:
        now = time.monotonic()
        return [t.status(now) for t in self._current()]

    async def check(self) -> str:
        """A readiness check: raise TaskNotHealthy naming each unhealthy task."""
        bad = [s for s in self.statuses() if not s.healthy]
        if bad:
            raise TaskNotHealthy("; ".join(f"{s.name} {s.state}: {s.detail}" for s in bad))
        return "ok"

    async def check_alive(self) -> str:
        """A liveness check: raise TaskNotHealthy when a task is dead or wedged (a restart of
        the process may help); a task in back-off or behind on its backlog is still alive."""
        bad = [s for s in self.statuses() if s.state in ("dead", "wedged")]
        if bad:
            raise TaskNotHealthy("; ".join(f"{s.name} {s.state}: {s.detail}" for s in bad))
        return "ok"

    def __iter__(self) -> Iterator[TaskHealth]:
        return iter(self._current())


_DEFAULT = TaskRegistry()


def task_registry() -> TaskRegistry:
    """The process's registry (what `/readyz` and `/metrics` read)."""
    return _DEFAULT


class _TaskCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "dalal_task_up",
            "1 while a long-lived task is alive, beating and without a problem",
            labels=["task"],
        )
        age = GaugeMetricFamily(
            "dalal_task_heartbeat_age_seconds",
            "Seconds since a long-lived task last made progress",
            labels=["task"],
        )
        for status in _DEFAULT.statuses():
            up.add_metric([status.name], 1.0 if status.healthy else 0.0)
            age.add_metric([status.name], status.heartbeat_age_seconds)
        yield up
        yield age


REGISTRY.register(_TaskCollector())


async def supervise(
    name: str,
    run: Callable[[TaskHealth], Awaitable[None]],
    *,
    registry: TaskRegistry | None = None,
    stale_after_seconds: float | None = DEFAULT_STALE_AFTER_SECONDS,
    initial_backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 30.0,
    healthy_after_seconds: float = 60.0,
) -> None:
    """Run `run(health)` for ever: when it raises (or returns), log, count, wait with an
    exponential back-off and start it again. The back-off resets once a run lasted
    `healthy_after_seconds`. Ends only by cancellation (which leaves the registry).

    `run` should `health.beat()` as it makes progress; a job that does not beat passes
    `stale_after_seconds=None` (then only its failures make it unhealthy, never its silence)."""
    stale = math.inf if stale_after_seconds is None else stale_after_seconds
    health = (registry or _DEFAULT).register(name, stale_after_seconds=stale)
    backoff = initial_backoff_seconds
    try:
        while True:
            started = time.monotonic()
            health.beat()
            try:
                await run(health)
                error = "returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.error("task.failed", task=name, error=error[:300], exc_info=exc)
            if time.monotonic() - started >= healthy_after_seconds:
                backoff = initial_backoff_seconds
            RESTARTS.labels(name).inc()
            health.backoff(error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_seconds)
    finally:
        health.close()
