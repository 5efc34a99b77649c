"""ReconcileRunner: retries a run that cannot run yet, confirms breaks with a second look,
coalesces a burst of requests, publishes each result on system.events (a real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date

import redis.asyncio as aioredis

from dalal_shared.bus import Publisher
from dalal_shared.errors import TemporaryError
from dalal_shared.messages import Envelope, ReconcileCompleted
from dalal_shared.reconciling import ReconcileRunner
from dalal_shared.streams import SYSTEM_EVENTS


async def published(r: aioredis.Redis) -> list[ReconcileCompleted]:
    out = []
    for _id, fields in await r.xrange(SYSTEM_EVENTS):
        message = Envelope.from_fields(fields).message
        if isinstance(message, ReconcileCompleted):
            out.append(message)
    return out


async def eventually(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Answers:
    """A check answering from a script: an exception is raised, a list is the breaks."""

    def __init__(self, *answers: object):
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> Sequence[str]:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return answer


async def test_the_start_run_waits_until_the_check_can_run(aredis: aioredis.Redis) -> None:
    await aredis.delete(SYSTEM_EVENTS)
    check = Answers(TemporaryError("no session"), TemporaryError("no session"), [])
    runner = ReconcileRunner(
        "broker", check, Publisher(aredis, source="t"), retry_seconds=0.05, confirm_seconds=0
    )
    runner.start()
    try:
        await eventually(lambda: _count(aredis, 1))
    finally:
        await runner.stop()
    [event] = await published(aredis)
    assert (event.scope, event.trigger, event.breaks) == ("broker", "start", 0)
    assert check.calls == 3


async def test_breaks_are_confirmed_by_a_second_look(aredis: aioredis.Redis) -> None:
    await aredis.delete(SYSTEM_EVENTS)
    publisher = Publisher(aredis, source="t")
    transient = ReconcileRunner(
        "portfolio", Answers(["trade_missing_in_ledger"], []), publisher, confirm_seconds=0.05
    )
    event = await transient.run_once("session_closed", date(2025, 3, 4))
    assert (event.breaks, event.kinds, event.day) == (0, (), date(2025, 3, 4))
    real = ReconcileRunner(
        "portfolio",
        Answers(["quantity_mismatch", "trade_missing_in_ledger", "quantity_mismatch"]),
        publisher,
        confirm_seconds=0.05,
    )
    event = await real.run_once("manual")
    assert (event.breaks, event.kinds) == (3, ("quantity_mismatch", "trade_missing_in_ledger"))
    assert [e.breaks for e in await published(aredis)] == [0, 3]


async def test_a_burst_of_requests_costs_one_run(aredis: aioredis.Redis) -> None:
    await aredis.delete(SYSTEM_EVENTS)
    gate = asyncio.Event()
    calls = 0

    async def slow_check() -> list[str]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return []

    runner = ReconcileRunner("portfolio", slow_check, Publisher(aredis, source="t"))
    runner.start()
    try:
        await eventually(_true_when(lambda: calls == 1))
        for _ in range(20):  # while the start run is busy: one pending run, the latest trigger
            runner.request("session_valid")
        runner.request("session_closed", date(2025, 3, 4))
        gate.set()
        await eventually(lambda: _count(aredis, 2))
    finally:
        await runner.stop()
    assert calls == 2
    assert [(e.trigger, e.day) for e in await published(aredis)] == [
        ("start", None),
        ("session_closed", date(2025, 3, 4)),
    ]


async def _count(r: aioredis.Redis, n: int) -> bool:
    return len(await published(r)) >= n


def _true_when(condition):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return bool(condition())

    return check
