"""The live loop over real INFY daily bars: orders with deterministic ids, decisions recorded
with their reasons, a redelivered bar never ordering twice, the kill switch refusing entries."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine_fixtures import CONFIG, KNOWN, infy_bars

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import (
    CancelOrder,
    KillSwitchEngaged,
    KillSwitchReleased,
    OrderCancelled,
    OrderFilled,
    Tick,
)
from dalal_shared.timeutil import IST


def engine(tmp_path: Path) -> LiveEngine:
    store = EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3")
    live = LiveEngine(
        load_text(CONFIG), store, initial_equity_rupees=Decimal("1000000"), safety_known=KNOWN
    )
    live.start()
    return live


def fill_of(order, price: str) -> OrderFilled:  # type: ignore[no-untyped-def]
    return OrderFilled(
        client_order_id=order.client_order_id,
        broker_order_id="b",
        trade_id=f"t-{order.client_order_id}",
        symbol="INFY",
        side=order.side,
        product="CNC",
        quantity=order.quantity,
        price=Decimal(price),
        filled_at=datetime(2021, 1, 1, 4, tzinfo=IST),
    )


def test_orders_follow_crosses_and_a_replayed_history_orders_nothing_new(tmp_path: Path) -> None:
    live = engine(tmp_path)
    sent = []
    for bar in infy_bars():
        for order in live.on_bar(bar):
            sent.append(order)
            live.on_order_event(fill_of(order, str(bar.close)))
    assert [o.side for o in sent][:4] == ["BUY", "SELL", "BUY", "SELL"]
    assert all(o.client_order_id[0] in "EX" and len(o.client_order_id) <= 20 for o in sent)
    # an engine restarted on the same database, fed the whole history again, orders nothing
    again = LiveEngine(
        load_text(CONFIG),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    assert [o for bar in infy_bars() for o in again.on_bar(bar)] == []
    assert again.states[("ref", "INFY")].quantity == live.states[("ref", "INFY")].quantity


def test_kill_switch_refuses_entries_and_says_so(tmp_path: Path) -> None:
    live = engine(tmp_path)
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="test"))
    assert [o for bar in infy_bars() for o in live.on_bar(bar)] == []
    decisions = live.store.decisions()
    assert decisions and {(d["approved"], d["reason"]) for d in decisions} == {
        (False, "kill_switch")
    }


def test_daily_loss_limit_refuses_entries_with_its_reason(tmp_path: Path) -> None:
    store = EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3")
    cfg = CONFIG.replace(
        "{enforce_market_hours: false}", "{enforce_market_hours: false, max_daily_loss_rupees: 1}"
    )
    live = LiveEngine(
        load_text(cfg), store, initial_equity_rupees=Decimal("1000000"), safety_known=KNOWN
    )
    live.start()
    from dalal_shared.messages import EquitySnapshot
    from dalal_shared.timeutil import utcnow

    equity = Decimal("1000000")
    orders = []
    for bar in infy_bars():
        # every day a 1,000-rupee loss in the morning on the exchange's clock, over the
        # 1-rupee limit: the snapshot is marked on the bar's own day
        live.clock.observe(bar.start + timedelta(hours=10))
        equity -= 1000
        live.on_equity(
            EquitySnapshot(
                equity=equity,
                cash=equity,
                realised_pnl=Decimal(0),
                unrealised_pnl=Decimal(0),
                open_positions=0,
                at=utcnow(),  # the portfolio's stamp (the wall clock): not what is marked
            )
        )
        orders += live.on_bar(bar)
    assert orders == []
    assert {d["reason"] for d in live.store.decisions()} == {"daily_loss"}


async def test_refusals_are_published_with_their_reason(tmp_path: Path, aredis) -> None:
    from dalal_engine.handlers import EngineGate, bars_handler
    from dalal_engine.store import outbox_t
    from dalal_shared.bus import Publisher
    from dalal_shared.messages import Envelope, RiskDecided
    from dalal_shared.outbox import OutboxRelay
    from dalal_shared.streams import ENGINE_DECISIONS

    live = engine(tmp_path)
    live.relay = OutboxRelay(live.store.engine, outbox_t, aredis)  # as the app wires it
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="test"))
    handle = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())
    corrs = set()
    for bar in infy_bars():
        envelope = Envelope.wrap(bar, source="data")
        corrs.add(envelope.corr)
        await handle(envelope)
    entries = [Envelope.from_fields(f) for _i, f in await aredis.xrange(ENGINE_DECISIONS)]
    published = [e.message for e in entries]
    assert published
    assert all(isinstance(m, RiskDecided) for m in published)
    assert {(m.approved, m.reason, m.symbol) for m in published} == {(False, "kill_switch", "INFY")}
    assert len(published) == len(live.store.decisions())
    assert live.store.outbox_messages() == []  # pruned once Redis had them
    # each decision carries the correlation id of the bar it was made on (traced from the feed)
    assert {e.corr for e in entries} <= corrs


SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
"""


def swing_engine(tmp_path: Path) -> LiveEngine:
    store = EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3")
    live = LiveEngine(
        load_text(SWING), store, initial_equity_rupees=Decimal("1000000"), safety_known=KNOWN
    )
    live.start()
    return live


def tick(price: float, minute: int = 0) -> Tick:
    return Tick(
        instrument_token=408065,
        symbol="INFY",
        last_price=Decimal(f"{price:.2f}"),
        exchange_ts=datetime(2021, 1, 5, 10, minute, tzinfo=IST),
    )


def open_swing_position(tmp_path: Path) -> tuple[LiveEngine, int, float]:
    """Feed bars until swing enters, fill the entry; (engine, quantity, fill price)."""
    live = swing_engine(tmp_path)
    for bar in infy_bars():
        orders = live.on_bar(bar)
        if orders:
            (entry,) = orders
            assert entry.side == "BUY"
            live.on_order_event(fill_of(entry, str(bar.close)))
            return live, entry.quantity, float(bar.close)
    raise AssertionError("swing never entered on the INFY fixture")


def cancels(live: LiveEngine) -> list[CancelOrder]:
    """The CancelOrder commands waiting in the engine's outbox."""
    return [m for m in live.store.outbox_messages() if isinstance(m, CancelOrder)]


def test_ticks_hit_targets_and_the_stop_between_bars_once_each(tmp_path: Path) -> None:
    live, qty, entry = open_swing_position(tmp_path)
    st = live.states[("sw", "INFY")].state
    stop = st["stop"]
    risk = entry - stop
    assert stop < entry and st["initial_quantity"] == qty  # armed at the fill, before a bar
    t1 = entry + risk  # 1R
    assert live.on_tick(tick(t1 - 0.05)) == []  # under target 1, over the stop: nothing
    (reduce,) = live.on_tick(tick(t1 + 0.05, 1))
    assert (reduce.side, reduce.quantity) == ("SELL", qty // 3)
    assert reduce.client_order_id.startswith("T1-")
    assert live.on_tick(tick(t1 + 0.05, 1)) == []  # the same tick delivered again
    # a restarted engine on the same database does not sell target 1 again either
    again = LiveEngine(
        load_text(SWING),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    again.start()
    assert again.on_tick(tick(t1 + 0.10, 2)) == []
    # the price falls through the stop while target 1 is unfilled: the stop supersedes it
    (exit_,) = again.on_tick(tick(stop - 0.05, 3))
    assert (exit_.side, exit_.quantity) == ("SELL", qty)
    assert exit_.client_order_id.startswith("S-")
    assert [(c.client_order_id, c.reason.split(":")[0]) for c in cancels(again)] == [
        (reduce.client_order_id, "superseded")
    ]
    assert again.on_tick(tick(stop - 0.50, 4)) == []  # already exiting
    restarted = LiveEngine(
        load_text(SWING),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    restarted.start()
    assert restarted.on_tick(tick(stop - 0.05, 3)) == []
    # the restarted engine sends the cancel again (the broker treats it idempotently): the
    # outbox still holds the first (never published here) and the one queued at start
    assert [c.client_order_id for c in cancels(restarted)] == [reduce.client_order_id] * 2


def test_a_stale_entry_is_cancelled_at_the_next_bar_and_frees_the_symbol(tmp_path: Path) -> None:
    live = engine(tmp_path)
    bars = infy_bars()
    n = 0
    while not (orders := live.on_bar(bars[n])):
        n += 1
    (entry,) = orders
    assert cancels(live) == []
    assert live.on_bar(bars[n + 1]) == []  # not filled by the next bar
    (cancel,) = cancels(live)
    assert cancel.client_order_id == entry.client_order_id
    assert cancel.reason == "stale: not filled by the next bar"
    (intent,) = live.store.intents(open_only=True)
    assert intent.status == "CANCELLING"
    live.on_bar(bars[n + 2])
    assert cancels(live) == [cancel]  # asked once
    live.on_order_event(
        OrderCancelled(client_order_id=entry.client_order_id, reason="cancelled by engine")
    )
    assert live.store.intents(open_only=True) == []
    assert live.states[("ref", "INFY")].quantity == 0
    # the symbol trades again: later crosses make new orders
    later = [o for bar in bars[n + 3 :] for o in live.on_bar(bar)]
    assert later and later[0].side == "BUY"


def test_the_kill_switch_refuses_an_intrabar_stop_once_and_says_so(tmp_path: Path) -> None:
    live, qty, _entry = open_swing_position(tmp_path)
    stop = live.states[("sw", "INFY")].state["stop"]
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="test"))
    for minute in range(5):  # ticks keep coming under the stop
        assert live.on_tick(tick(stop - 1, minute)) == []
    refused = [d for d in live.store.decisions() if d["action"] == "EXIT"]
    assert [(d["approved"], d["reason"]) for d in refused] == [(False, "kill_switch")]
    live.on_system_event(KillSwitchReleased(released_by="test"))
    (exit_,) = live.on_tick(tick(stop - 1, 6))
    assert (exit_.side, exit_.quantity) == ("SELL", qty)


async def test_decisions_and_cancels_of_a_step_survive_a_crash_before_publishing(
    tmp_path: Path, aredis
) -> None:
    """Written in the step's transaction, not kept in memory: an engine that dies after the
    step and before the publish sends them after its restart, under the ids they were given."""
    from dalal_engine.handlers import drain_outbox
    from dalal_engine.store import outbox_t
    from dalal_shared.messages import Envelope, RiskDecided
    from dalal_shared.outbox import OutboxRelay
    from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS

    live = engine(tmp_path)
    bars = infy_bars()
    n = 0
    while not live.on_bar(bars[n]):
        n += 1
    live.on_bar(bars[n + 1])  # the entry is stale: a cancel, and the decisions so far
    written = live.store.outbox_messages()
    assert any(isinstance(m, CancelOrder) for m in written)
    assert any(isinstance(m, RiskDecided) for m in written)
    del live  # the process dies here: nothing was published

    again = engine(tmp_path)
    again.relay = OutboxRelay(again.store.engine, outbox_t, aredis)
    await drain_outbox(again, always=True)  # what the app does at start
    sent = [
        Envelope.from_fields(f).message
        for stream in (ENGINE_DECISIONS, ORDERS_COMMANDS)
        for _i, f in await aredis.xrange(stream)
    ]
    cancels_sent = [m for m in sent if isinstance(m, CancelOrder)]
    # the stored cancel and the one requeued for the CANCELLING intent at start: same order
    assert {c.client_order_id for c in cancels_sent} == {
        m.client_order_id for m in written if isinstance(m, CancelOrder)
    }
    assert [m for m in sent if isinstance(m, RiskDecided)] == [
        m for m in written if isinstance(m, RiskDecided)
    ]
    assert again.store.outbox_messages() == []
