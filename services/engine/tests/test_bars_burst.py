"""A burst of bars decided at once (`LiveEngine.on_bars`, what the bars handler does with one
bus read) ends exactly where the same bars handled one by one (`on_bar`) end: the same orders
with the same ids, the same decisions, the same stored bars and positions; the bars nobody
trades are stored after the orders; a symbol that comes twice in one burst (a backlog) sees
the order of its first bar."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_fixtures import KNOWN, infy_bars

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore, bars_t
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, OrderFilled, PlaceOrder

TRADED = ("INFY", "TCS", "SBIN")
QUIET = ("WIPRO", "ITC")  # in no universe: stored, never decided on
CONFIG = """
name: ref
strategy: sma_cross
universe: [INFY, TCS, SBIN]
params: {fast_bars: 5, slow_bars: 20}
risk: {enforce_market_hours: false}
"""


def days() -> list[list[Bar]]:
    """INFY's real daily bars, with TCS, SBIN and the quiet symbols as scaled copies (each
    SBIN closes at its open on most days, so it crosses on days of its own)."""
    out = []
    for n, bar in enumerate(infy_bars()[:400]):
        day = []
        for k, symbol in enumerate((*TRADED, *QUIET)):
            scale = Decimal(1 + k)
            close = bar.close * scale
            if symbol == "SBIN":  # a different path: crosses elsewhere
                close = (bar.open if n % 7 else bar.close) * scale
            fields = {
                "symbol": symbol,
                "open": bar.open * scale,
                "high": max(bar.high * scale, close),
                "low": min(bar.low * scale, close),
                "close": close,
            }
            day.append(Bar.model_validate({**bar.model_dump(), **fields}))
        out.append(day)
    return out


def engine(path: Path | str, config: str = CONFIG) -> LiveEngine:
    """An engine on a SQLite file (a path) or a database URL."""
    url = path if isinstance(path, str) else f"sqlite:///{path}"
    live = LiveEngine(
        load_text(config),
        EngineStore.open(url),
        initial_equity_rupees=Decimal("10000000"),
        safety_known=KNOWN,
    )
    live.start()
    return live


def fill(live: LiveEngine, orders: list[PlaceOrder], bar: Bar) -> None:
    for order in orders:
        live.on_order_event(
            OrderFilled(
                client_order_id=order.client_order_id,
                broker_order_id=f"b-{order.client_order_id}",
                trade_id=f"t-{order.client_order_id}",
                symbol=order.symbol,
                side=order.side,
                product="CNC",
                quantity=order.quantity,
                price=bar.close,
                filled_at=bar.start,
            )
        )


def outcome(live: LiveEngine) -> tuple[object, ...]:
    store = live.store
    with store.engine.connect() as c:
        bars = c.execute(
            sa.select(bars_t.c.symbol, bars_t.c.start, bars_t.c.close).order_by(
                bars_t.c.symbol, bars_t.c.start
            )
        ).all()
    decisions = [
        {k: v for k, v in d.items() if k not in ("id", "corr", "recorded_at")}
        for d in store.decisions(limit=100_000)
    ]
    positions = {k: (s.quantity, s.average_price) for k, s in live.states.items()}
    return bars, decisions, positions, sorted(i.command.client_order_id for i in store.intents())


@pytest.mark.parametrize("defer_quiet", [False, True], ids=["quiet-in-step", "quiet-after"])
def test_a_burst_of_bars_ends_where_the_same_bars_one_by_one_end(
    tmp_path: Path, defer_quiet: bool
) -> None:
    """Also with the bars nobody trades left for after the orders (`defer_quiet`, the bus
    handler's way): the same orders, and those bars stored all the same."""
    one, burst = engine(tmp_path / "one.sqlite3"), engine(tmp_path / "burst.sqlite3")
    sent_one: list[PlaceOrder] = []
    sent_burst: list[PlaceOrder] = []
    all_days = days()
    n = 0
    while n < len(all_days):
        # mostly one day per read; every tenth read carries two days (a backlog after a pause)
        chunk = all_days[n : n + (2 if n % 10 == 5 else 1)]
        n += len(chunk)
        bars = [b for day in chunk for b in day]
        new_one = [o for b in bars for o in one.on_bar(b)]
        out = burst.on_bars(
            [(b, f"corr-{b.symbol}-{b.start:%Y%m%d}") for b in bars], defer_quiet=defer_quiet
        )
        if defer_quiet:
            assert not out.quiet and len(out.unsettled) == len(QUIET) * len(chunk)
            assert burst.settle_quiet(out) is out.quiet and not out.unsettled
        assert {q[1] for q in out.quiet} <= set(QUIET)
        assert len(out.quiet) == len(QUIET) * len(chunk)
        burst.store.store_bars(out.quiet)
        assert out.orders == new_one
        for order in out.orders:  # each order carries the corr of its own bar
            assert out.corrs[order.client_order_id].startswith(f"corr-{order.symbol}-")
        sent_one += new_one
        sent_burst += out.orders
        fill(one, new_one, chunk[-1][0])
        fill(burst, out.orders, chunk[-1][0])
    assert len({o.symbol for o in sent_one}) == len(TRADED)  # every traded symbol traded
    assert len(sent_one) > 10
    assert sent_burst == sent_one
    assert outcome(burst) == outcome(one)


def test_a_repeated_symbol_in_one_burst_waits_for_its_first_order(tmp_path: Path) -> None:
    """Two bars of INFY in one read, the first of which orders: the second finds that order in
    flight and is deferred (as one by one), not decided again into a second order."""
    probe, live = engine(tmp_path / "probe.sqlite3"), engine(tmp_path / "e.sqlite3")
    infy = [day[0] for day in days()]
    ordering = None
    for bar in infy:
        if probe.on_bar(bar):
            ordering = infy.index(bar)
            break
        live.on_bar(bar)
    assert ordering is not None, "never ordered"
    first, second = infy[ordering], infy[ordering + 1]
    assert probe.on_bar(second) == []  # one by one: deferred behind the first's order
    out = live.on_bars([(first, "c1"), (second, "c2")])
    assert len(out.orders) == 1
    assert out.corrs == {out.orders[0].client_order_id: "c1"}
    assert live.last_bar("ref", "INFY") == first.start == probe.last_bar("ref", "INFY")


@pytest.mark.parametrize("traded", [TRADED, ("INFY",)], ids=["three-traded", "one-traded"])
async def test_a_minutes_bars_through_the_bus_are_decided_in_one_read(
    tmp_path: Path, aredis, traded: tuple[str, ...]
) -> None:
    """The feed's way (each day's bars in one MULTI/EXEC, each with its closing tick's corr)
    through a real consumer and the engine's bars handler: the orders are those of the bars
    one by one, each published with the corr of its own bar, the refused and quiet bars all
    stored, nothing left pending; the traded symbols' bars of a read are decoded and decided
    before the others (`BarsHandler.urgent`)."""
    import asyncio

    from dalal_engine.handlers import EngineGate, bars_handler
    from dalal_engine.store import outbox_t
    from dalal_shared.bus import ConsumerConfig, Publisher, StreamConsumer, group_info
    from dalal_shared.messages import Envelope
    from dalal_shared.outbox import OutboxRelay
    from dalal_shared.streams import ORDERS_COMMANDS, bars_stream
    from dalal_shared.testing import wait_until

    config = CONFIG.replace("[INFY, TCS, SBIN]", f"[{', '.join(traded)}]")
    quiet = {b.symbol for b in days()[0]} - set(traded)
    one = engine(tmp_path / "one.sqlite3", config)
    live = engine(tmp_path / "bus.sqlite3", config)
    live.relay = OutboxRelay(live.store.engine, outbox_t, aredis)
    stream = bars_stream("day")
    handler = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())
    steps: list[list[str]] = []  # the symbols of each batch step, in order
    batch = handler.batch

    async def recorded(envelopes):  # type: ignore[no-untyped-def]
        steps.append([e.message.symbol for e in envelopes])
        return await batch(envelopes)

    handler.batch = recorded  # type: ignore[method-assign]
    one_by_one: list[str] = []  # bars the bus had to hand over one at a time
    dispatch = handler._one

    async def counted(envelope):  # type: ignore[no-untyped-def]
        one_by_one.append(envelope.message.symbol)
        await dispatch(envelope)

    handler._one = counted  # type: ignore[method-assign]
    consumer = StreamConsumer(
        aredis, ConsumerConfig(group="engine", block_ms=50), {stream: handler}
    )
    task = asyncio.create_task(consumer.run())
    feed = Publisher(aredis, source="data")
    expected: dict[str, str] = {}  # order id -> the corr of the bar that made it
    all_days = days()[:120]
    try:
        for n, day in enumerate(all_days):
            corrs = [f"tick-{n}-{b.symbol}" for b in day]
            for bar, corr in zip(day, corrs, strict=True):
                for order in one.on_bar(bar):
                    expected[order.client_order_id] = corr
            await feed.publish_entries([(stream, b, c) for b, c in zip(day, corrs, strict=True)])

            async def consumed(want: int = (n + 1) * len(day)) -> bool:
                info = await group_info(aredis, stream, "engine")
                return (
                    info is not None
                    and info.pending == 0
                    and info.lag == 0
                    and (await aredis.xlen(stream) == want)
                )

            deadline = asyncio.get_running_loop().time() + 20
            while not await consumed():
                assert asyncio.get_running_loop().time() < deadline, "bars not consumed"
                await asyncio.sleep(0.01)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    assert expected, "the bars ordered nothing"
    # each read's traded bars decoded and decided in a step of their own, before the others
    assert all(set(s) <= set(traded) or set(s) <= quiet for s in steps), steps
    assert set(steps[0]) <= set(traded)
    assert one_by_one == []  # a lone traded bar too is decided in its step, not after the rest
    assert sum(len(s) for s in steps) == len(all_days) * len(all_days[0])
    placed = {
        e.message.client_order_id: e.corr
        for e in (Envelope.from_fields(f) for _i, f in await aredis.xrange(ORDERS_COMMANDS))
        if isinstance(e.message, PlaceOrder)
    }
    assert placed == expected
    stored = wait_until(lambda: outcome(live)[0], message="bars stored")
    assert len(stored) == len(all_days) * len(all_days[0])
    assert outcome(live)[1:] == outcome(one)[1:]


def test_a_burst_whose_transaction_fails_is_decided_again_one_by_one(
    tmp_path: Path, monkeypatch
) -> None:
    """The minute's transaction fails (the database refuses the write): nothing of it is
    kept, and the same bars handled one by one after (what the bus does then) make the orders
    and decisions they make without the failure."""
    from dalal_engine import store as store_module

    one, burst = engine(tmp_path / "one.sqlite3"), engine(tmp_path / "burst.sqlite3")
    all_days = days()
    for n, day in enumerate(all_days):
        new_one = [o for b in day for o in one.on_bar(b)]
        if not new_one:
            out = burst.on_bars([(b, None) for b in day])
            burst.store.store_bars(out.quiet)
            assert out.orders == []
            continue
        real_write = store_module._Rows.write

        def refused(self: object, c: object) -> None:
            raise RuntimeError("database is locked")

        monkeypatch.setattr(store_module._Rows, "write", refused)
        with pytest.raises(RuntimeError, match="locked"):
            burst.on_bars([(b, None) for b in day])
        monkeypatch.setattr(store_module._Rows, "write", real_write)
        again = [o for b in day for o in burst.on_bar(b)]
        assert again == new_one
        assert outcome(burst) == outcome(one)
        assert n > 20  # the failure hit a day with history behind it
        return
    raise AssertionError("nothing ordered")


def test_a_bar_whose_transaction_fails_is_decided_again_when_handled_again(
    tmp_path: Path, monkeypatch
) -> None:
    """One bar at a time (`on_bar`, the bus's one-by-one path): each bar of an order-making
    day first fails to be written (the database refuses), then is handled again, as the bus
    retries it. The orders and decisions are those made without the failures; before, the
    bar's history and strategy state had moved already, so the retry took the bar for one
    decided and the order was lost."""
    from dalal_engine import store as store_module

    one, retried = engine(tmp_path / "one.sqlite3"), engine(tmp_path / "retried.sqlite3")
    real_insert = store_module._insert_bars

    def refused(c: object, rows: object) -> None:
        raise RuntimeError("database is locked")

    for n, day in enumerate(days()):
        new_one = [o for b in day for o in one.on_bar(b)]
        if not new_one:
            for b in day:
                assert retried.on_bar(b) == []
            continue
        again: list[PlaceOrder] = []
        for b in day:
            monkeypatch.setattr(store_module, "_insert_bars", refused)
            with pytest.raises(RuntimeError, match="locked"):
                retried.on_bar(b)
            monkeypatch.setattr(store_module, "_insert_bars", real_insert)
            again += retried.on_bar(b)
        assert again == new_one
        assert outcome(retried) == outcome(one)
        assert n > 20  # the failure hit a day with history behind it
        return
    raise AssertionError("nothing ordered")


def test_a_burst_on_postgresql_ends_where_one_by_one_on_sqlite_ends(
    tmp_path: Path, postgres_url: str
) -> None:
    """The batch's rows (bars with ON CONFLICT DO NOTHING, states, decisions, outbox) on a
    real PostgreSQL: the same orders, decisions, bars and positions as one by one on SQLite."""
    one, burst = engine(tmp_path / "one.sqlite3"), engine(postgres_url)
    try:
        sent = 0
        for day in days()[:200]:
            new_one = [o for b in day for o in one.on_bar(b)]
            out = burst.on_bars([(b, None) for b in day])
            burst.store.store_bars(out.quiet)
            burst.store.store_bars(out.quiet)  # again: a bar stored already stays as it is
            assert out.orders == new_one
            fill(one, new_one, day[0])
            fill(burst, out.orders, day[0])
            sent += len(new_one)
        assert sent > 5
        assert outcome(burst) == outcome(one)
    finally:
        burst.store.engine.dispose()
