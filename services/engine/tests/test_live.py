"""The live loop over real INFY daily bars: orders with deterministic ids, decisions recorded
with their reasons, a redelivered bar never ordering twice, the kill switch refusing entries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from engine_fixtures import CONFIG, infy_bars

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import KillSwitchEngaged, OrderFilled
from dalal_shared.timeutil import IST


def engine(tmp_path: Path) -> LiveEngine:
    store = EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3")
    live = LiveEngine(load_text(CONFIG), store, initial_equity_rupees=Decimal("1000000"))
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
    live = LiveEngine(load_text(cfg), store, initial_equity_rupees=Decimal("1000000"))
    live.start()
    from dalal_shared.messages import EquitySnapshot
    from dalal_shared.timeutil import utcnow

    now = utcnow()
    for equity in ("1000000", "999000"):  # a 1,000-rupee loss today, over the 1-rupee limit
        live.on_equity(
            EquitySnapshot(
                equity=Decimal(equity),
                cash=Decimal(equity),
                realised_pnl=Decimal(0),
                unrealised_pnl=Decimal(0),
                open_positions=0,
                at=now,
            )
        )
    assert [o for bar in infy_bars() for o in live.on_bar(bar)] == []
    assert {d["reason"] for d in live.store.decisions()} == {"daily_loss"}


async def test_refusals_are_published_with_their_reason(tmp_path: Path, aredis) -> None:
    from dalal_engine.handlers import bars_handler
    from dalal_shared.bus import Publisher
    from dalal_shared.messages import Envelope, RiskDecided
    from dalal_shared.streams import ENGINE_DECISIONS

    live = engine(tmp_path)
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="test"))
    handle = bars_handler(live, Publisher(aredis, source="engine"))
    for bar in infy_bars():
        await handle(Envelope.wrap(bar, source="data"))
    published = [Envelope.from_fields(f).message for _i, f in await aredis.xrange(ENGINE_DECISIONS)]
    assert published
    assert all(isinstance(m, RiskDecided) for m in published)
    assert {(m.approved, m.reason, m.symbol) for m in published} == {(False, "kill_switch", "INFY")}
    assert len(published) == len(live.store.decisions())
