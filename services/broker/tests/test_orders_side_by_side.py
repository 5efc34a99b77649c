"""A bus read's orders placed side by side (`OrderCommands.batch`): the desk with a real journal
(SQLite) and a real Redis; the Kite adapter is a stand-in that answers only once every order of
the read is at it (so placing them one after another never finishes). The same path against
kitesim through a real broker process: `test_orders_with_kitesim.py`
(`test_orders_sent_together_are_each_placed_exactly_once`)."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from dalal_broker.config import BrokerSettings
from dalal_broker.desk import OrderDesk
from dalal_broker.handlers import OrderCommands
from dalal_broker.journal import Journal
from dalal_broker.killswitch import KillSwitch
from dalal_shared import db
from dalal_shared.bus import Publisher
from dalal_shared.messages import (
    CancelOrder,
    Envelope,
    Message,
    OrderAccepted,
    PlaceOrder,
)
from dalal_shared.streams import ORDERS_EVENTS


class Session:
    valid = True

    async def expire(self, reason: str) -> None:
        self.valid = False


class TogetherKite:
    """Answers `place_order` once `expected` calls are in flight at the same time; `broken`
    tags fail with an error nobody handles."""

    def __init__(self, expected: int, broken: frozenset[str] = frozenset()) -> None:
        self.expected, self.broken = expected, broken
        self.in_flight = 0
        self.most_in_flight = 0
        self.placed: list[str] = []
        self._all_there = asyncio.Event()

    def take_order_token(self) -> None:
        return None

    async def place_order(self, command: PlaceOrder, **_kw: Any) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.expected:
            self._all_there.set()
        try:
            # one at a time, the first call would wait here for ever: the test fails
            await asyncio.wait_for(self._all_there.wait(), timeout=20)
            if command.client_order_id in self.broken:
                raise RuntimeError("the adapter broke")
            self.placed.append(command.client_order_id)
            return f"K-{command.client_order_id}"
        finally:
            self.in_flight -= 1


def desk_with(
    tmp_path: Path,
    aredis: aioredis.Redis,
    kite: TogetherKite,
    settings: BrokerSettings | None = None,
) -> OrderDesk:
    journal = Journal(db.make_engine(f"sqlite:///{tmp_path / 'journal.sqlite3'}"))
    journal.migrate()
    desk = OrderDesk(
        settings=settings or BrokerSettings(enforce_market_hours=False),
        journal=journal,
        gateway=kite,  # type: ignore[arg-type]
        session=Session(),  # type: ignore[arg-type]
        kill_switch=KillSwitch(aredis),
        publisher=Publisher(aredis, source="broker"),
    )
    desk.leader = True
    return desk


def kill_switch_reads(desk: OrderDesk) -> list[str]:
    """A list that gets one entry each time the desk's kill switch is read."""
    reads: list[str] = []
    state = desk.kill_switch.state

    async def counted_state() -> Any:
        reads.append("read")
        return await state()

    desk.kill_switch.state = counted_state  # type: ignore[method-assign]
    return reads


def limit(coid: str, symbol: str, qty: int = 1, side: str = "BUY") -> PlaceOrder:
    return PlaceOrder(
        client_order_id=coid,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=qty,
        order_type="LIMIT",
        price=Decimal("100"),
        product="CNC",
    )


def wrapped(message: Message) -> Envelope:
    return Envelope.wrap(message, source="engine", corr=f"corr-{id(message)}")


async def accepted(aredis: aioredis.Redis) -> list[str]:
    out = []
    for _id, fields in await aredis.xrange(ORDERS_EVENTS):
        message = Envelope.from_fields(fields).message
        if isinstance(message, OrderAccepted):
            out.append(message.client_order_id)
    return out


async def test_a_reads_orders_are_at_kite_together_and_each_journaled_once(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    kite = TogetherKite(expected=4)
    desk = desk_with(tmp_path, aredis, kite)
    symbols = ["INFY", "TCS", "SBIN", "ITC"]
    envelopes = [wrapped(limit(f"t-{n}", s)) for n, s in enumerate(symbols)]
    copy = wrapped(limit("t-0", "INFY"))  # the first order again, in the same read

    done = await OrderCommands(desk).batch([*envelopes, copy])

    assert done == {e.id for e in [*envelopes, copy]}
    assert kite.most_in_flight == 4
    assert sorted(kite.placed) == ["t-0", "t-1", "t-2", "t-3"]  # the copy placed nothing
    rows = [desk.journal.get(f"t-{n}") for n in range(4)]
    assert [(r.status, r.broker_order_id) for r in rows if r is not None] == [
        ("OPEN", f"K-t-{n}") for n in range(4)
    ]
    assert sorted(await accepted(aredis)) == ["t-0", "t-1", "t-2", "t-3"]
    desk.db.close()


async def test_the_first_other_command_ends_the_run(tmp_path: Path, aredis: aioredis.Redis) -> None:
    """Only the orders ahead of the first other command go side by side; that command and all
    after it are left to the bus, which handles them one by one in stream order."""
    kite = TogetherKite(expected=2)
    desk = desk_with(tmp_path, aredis, kite)
    first, second = wrapped(limit("h-1", "INFY")), wrapped(limit("h-2", "TCS"))
    cancel = wrapped(CancelOrder(client_order_id="h-1"))
    later = wrapped(limit("h-3", "SBIN"))

    done = await OrderCommands(desk).batch([first, second, cancel, later])

    assert done == {first.id, second.id}
    assert sorted(kite.placed) == ["h-1", "h-2"]
    assert desk.journal.get("h-3") is None  # not touched: it waits for its turn
    # one order ahead is placed the same way (a first delivery alone): a copy here, so its row
    # comes back and nothing more reaches Kite
    assert await OrderCommands(desk).batch([first, cancel, later]) == {first.id}
    assert sorted(kite.placed) == ["h-1", "h-2"]
    desk.db.close()


async def test_a_placement_that_fails_is_left_to_the_one_by_one_path(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    kite = TogetherKite(expected=3, broken=frozenset({"f-2"}))
    desk = desk_with(tmp_path, aredis, kite)
    envelopes = [wrapped(limit(f"f-{n}", s)) for n, s in enumerate(["INFY", "TCS", "SBIN"])]

    done = await OrderCommands(desk).batch(envelopes)

    assert done == {envelopes[0].id, envelopes[1].id}  # f-2 goes one by one (not acked here)
    assert sorted(await accepted(aredis)) == ["f-0", "f-1"]
    broken = desk.journal.get("f-2")
    # journaled before its send, the send counted: a later look at Kite settles it
    assert broken is not None and (broken.status, broken.send_attempts) == ("PENDING", 1)
    desk.db.close()


async def test_an_order_journaled_before_is_answered_from_the_journal_in_a_batch(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """An order placed before (a copy of an old command in a new read) comes back as its
    journal row has it (the insert finds the row), the others are placed."""
    kite = TogetherKite(expected=2)
    desk = desk_with(tmp_path, aredis, kite)
    old = limit("k-0", "INFY")
    desk.journal.insert(old, corr="k-0", status="OPEN", send_attempts=1)
    desk.journal.update("k-0", broker_order_id="K-old")
    envelopes = [wrapped(old), wrapped(limit("k-1", "TCS")), wrapped(limit("k-2", "SBIN"))]

    done = await OrderCommands(desk).batch(envelopes)

    assert done == {e.id for e in envelopes}
    assert sorted(kite.placed) == ["k-1", "k-2"]
    row = desk.journal.get("k-0")
    assert row is not None and (row.status, row.broker_order_id) == ("OPEN", "K-old")
    desk.db.close()


async def test_a_copy_of_an_http_placement_waits_for_it_and_holds_up_no_other_order(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """A `POST /orders` order is announced on the bus before it is placed, so the broker's
    consumer can meet its copy while the HTTP placement is under way: that copy waits for it
    and then places nothing; the read's other orders go on without waiting."""
    kite = TogetherKite(expected=2)
    desk = desk_with(tmp_path, aredis, kite)
    http_order = limit("w-0", "INFY")
    under_way = desk._http_placing["w-0"] = asyncio.Event()  # as place_announced sets it
    envelopes = [wrapped(http_order), wrapped(limit("w-1", "TCS")), wrapped(limit("w-2", "SBIN"))]

    batch = asyncio.create_task(OrderCommands(desk).batch(envelopes))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while sorted(kite.placed) != ["w-1", "w-2"]:
        assert loop.time() < deadline, "the others waited for the HTTP placement"
        await asyncio.sleep(0.01)
    assert not batch.done()  # the copy still waits
    # the HTTP placement ends: its row journaled and answered (what place_announced leaves)
    desk.journal.insert(http_order, corr="w-0", status="OPEN", send_attempts=1)
    desk.journal.update("w-0", broker_order_id="K-http")
    del desk._http_placing["w-0"]
    under_way.set()

    assert await batch == {e.id for e in envelopes}
    assert sorted(kite.placed) == ["w-1", "w-2"]  # the copy placed nothing more
    row = desk.journal.get("w-0")
    assert row is not None and row.broker_order_id == "K-http"
    desk.db.close()


async def test_the_next_orders_guards_pass_while_the_row_before_is_being_written(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """An order takes its turn on the journal's thread under the desk's lock and waits for its
    row outside it: the next order's guards do not wait for the row before (they read the
    journal on the same thread, so they still see it)."""

    kite = TogetherKite(expected=2)
    desk = desk_with(tmp_path, aredis, kite)
    journal_busy = threading.Event()
    busy = desk.db.submit(journal_busy.wait, 60)  # the journal's thread held up
    guarded = kill_switch_reads(desk)
    orders = [limit("g-1", "INFY"), limit("g-2", "TCS")]
    placing = [asyncio.create_task(desk.place(o, read_first=False)) for o in orders]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while len(guarded) < 2:
        assert loop.time() < deadline, "the second order's guards waited for the first's row"
        await asyncio.sleep(0.01)
    assert desk.journal.get("g-1") is None  # both guarded before any row was written
    journal_busy.set()
    await busy
    rows = await asyncio.gather(*placing)
    assert [(r.client_order_id, r.status) for r in rows] == [("g-1", "OPEN"), ("g-2", "OPEN")]
    assert sorted(kite.placed) == ["g-1", "g-2"]
    desk.db.close()


async def test_a_reads_orders_are_judged_against_one_reading_of_the_kill_switch(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """The kill switch is read once for a read's orders (not once per order under the desk's
    lock, where a minute's orders waited for each other's Redis round trip): engaged, every
    order of the read is rejected and none reaches Kite; released, all of them are placed."""
    kite = TogetherKite(expected=3)
    desk = desk_with(tmp_path, aredis, kite)
    reads = kill_switch_reads(desk)
    await desk.kill_switch.engage("test", by="ops")
    stopped = [wrapped(limit(f"s-{n}", s)) for n, s in enumerate(["INFY", "TCS", "SBIN"])]
    assert await OrderCommands(desk).batch(stopped) == {e.id for e in stopped}
    assert reads == ["read"] and kite.placed == []
    for n in range(3):
        row = desk.journal.get(f"s-{n}")
        assert row is not None and (row.status, row.reason) == ("REJECTED", "kill_switch")

    await desk.kill_switch.release()
    reads.clear()
    going = [wrapped(limit(f"p-{n}", s)) for n, s in enumerate(["INFY", "TCS", "SBIN"])]
    assert await OrderCommands(desk).batch(going) == {e.id for e in going}
    assert reads == ["read"]
    assert sorted(kite.placed) == ["p-0", "p-1", "p-2"]
    desk.db.close()


class JournaledFirstKite(TogetherKite):
    """`TogetherKite` that notes, at each call, which of `coids` the journal holds then."""

    def __init__(self, expected: int, coids: list[str]) -> None:
        super().__init__(expected)
        self.coids = coids
        self.journal: Journal | None = None
        self.journaled_at_call: list[list[str]] = []
        self.called: threading.Event | None = None  # set at the first call

    async def place_order(self, command: PlaceOrder, **kw: Any) -> str:
        assert self.journal is not None
        held = [c for c in self.coids if self.journal.get(c) is not None]
        self.journaled_at_call.append(held)
        if self.called is not None:
            self.called.set()
        return await super().place_order(command, **kw)


async def test_no_order_of_a_read_goes_to_kite_before_all_of_them_are_journaled(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """A read's rows are written in one turn of the journal's thread (one transaction) before
    the first Kite call. One after another, each order's insert was a turn of its own, queued
    behind the one before: here a write that leaves some of the read's orders unjournaled
    holds the journal's thread until Kite has been called (as a slow database would), so one
    by one the first order goes to Kite with its own row alone written."""
    coids = [f"j-{n}" for n in range(4)]
    kite = JournaledFirstKite(4, coids)
    desk = desk_with(tmp_path, aredis, kite)
    kite.journal = journal = desk.journal
    kite.called = threading.Event()
    for name in ("insert", "insert_many"):
        write = getattr(journal, name)

        def held(*args: Any, _write: Any = write, **kw: Any) -> Any:
            out = _write(*args, **kw)
            if any(journal.get(c) is None for c in coids):  # the deadline: never a hang
                kite.called.wait(timeout=10)
            return out

        setattr(journal, name, held)
    symbols = ["INFY", "TCS", "SBIN", "ITC"]
    envelopes = [wrapped(limit(c, s)) for c, s in zip(coids, symbols, strict=True)]

    assert await OrderCommands(desk).batch(envelopes) == {e.id for e in envelopes}

    assert kite.journaled_at_call == [coids] * 4
    assert sorted(kite.placed) == coids
    desk.db.close()


def live(cap: str) -> BrokerSettings:
    return BrokerSettings(
        mode="live",
        session_key="a-live-session-key-for-tests-0123",  # type: ignore[arg-type]
        live_capital_cap_rupees=Decimal(cap),
        enforce_market_hours=False,
    )


async def test_a_reads_buys_count_toward_the_live_capital_cap_one_after_another(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """Live mode: each buy of a read is judged with the open orders in the journal and the
    read's buys passed before it, as if journaled one by one: Rs 200 open, a cap of Rs 1,000,
    four Rs 300 buys and a sell: the first two buys fit (800), the third and fourth would go
    over and are rejected `capital_cap` without reaching Kite; the sell counts for nothing."""
    kite = TogetherKite(expected=3)
    desk = desk_with(tmp_path, aredis, kite, live("1000"))
    open_buy = limit("c-open", "HDFCBANK", qty=2)  # Rs 200, open at Kite
    desk.journal.insert(open_buy, corr="c-open", status="OPEN", send_attempts=1)
    read = [
        limit("c-1", "INFY", qty=3),
        limit("c-2", "TCS", qty=3, side="SELL"),
        limit("c-3", "SBIN", qty=3),
        limit("c-4", "ITC", qty=3),
        limit("c-5", "LT", qty=3),
    ]
    envelopes = [wrapped(o) for o in read]

    assert await OrderCommands(desk).batch(envelopes) == {e.id for e in envelopes}

    assert sorted(kite.placed) == ["c-1", "c-2", "c-3"]
    outcome = {}
    for order in read:
        row = desk.journal.get(order.client_order_id)
        assert row is not None
        outcome[order.client_order_id] = (row.status, row.reason)
    assert outcome == {
        "c-1": ("OPEN", None),
        "c-2": ("OPEN", None),
        "c-3": ("OPEN", None),
        "c-4": ("REJECTED", "capital_cap"),
        "c-5": ("REJECTED", "capital_cap"),
    }
    desk.db.close()


async def test_a_read_whose_journal_transaction_fails_writes_nothing_and_is_left_to_the_bus(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    """The journal's one transaction for a read fails (here its outbox table is gone, so the
    rejections' events cannot be written): no row of the read is written, nothing reaches
    Kite, no entry is acknowledged (the bus hands each one over again, one by one)."""
    import sqlalchemy as sa

    kite = TogetherKite(expected=1)
    desk = desk_with(tmp_path, aredis, kite)
    await desk.kill_switch.engage("test", by="ops")  # every order a rejection with an event
    with desk.journal.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE broker_outbox"))
    envelopes = [wrapped(limit(f"x-{n}", s)) for n, s in enumerate(["INFY", "TCS"])]

    assert await OrderCommands(desk).batch(envelopes) == set()

    assert [desk.journal.get(f"x-{n}") for n in range(2)] == [None, None]
    assert kite.placed == [] and desk._in_flight == set()
    desk.db.close()
