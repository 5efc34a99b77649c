"""`exchange_stop: true` on an MIS instance: the position's stop is an SL-M sell at the
exchange, and the engine's own sells never run beside it (Kite lets an MIS sell go past the
position into a short). A sell of the engine's is stored HELD and the SL-M cancelled in the
same step; the sell goes out once the broker reports the SL-M cancelled, cut to what is still
held, or is dropped when the SL-M sold first. Real INFY daily bars, a real SQLite store; the
order events are the broker's messages."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from engine_fixtures import KNOWN, infy_bars

import dalal_engine.live as live_module
from dalal_engine.live import MAKE_WAY, SLM_SOLD, LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.calendar import nse_calendar
from dalal_shared.messages import (
    CancelOrder,
    KillSwitchEngaged,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    ProtectPosition,
    Tick,
)
from dalal_shared.timeutil import IST

SWING = """
name: sw
strategy: swing
universe: [INFY]
product: MIS
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
exchange_stop: true
"""
KEY = ("sw", "INFY")


def engine(tmp_path: Path, config: str = SWING) -> LiveEngine:
    live = LiveEngine(
        load_text(config),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    return live


class Session:
    """The trading day after the entry bar: ticks and fills stamped in its hours."""

    def __init__(self, day: datetime):
        cal = nse_calendar()
        self.day = cal.next_trading_day(day.date())
        self.minute = 0

    def at(self) -> datetime:
        self.minute += 1
        start = datetime.combine(self.day, time(9, 30), tzinfo=IST)
        return start + timedelta(minutes=self.minute)

    def tick(self, price: float | Decimal) -> Tick:
        return Tick(
            instrument_token=408065,
            symbol="INFY",
            last_price=Decimal(f"{float(price):.2f}"),
            exchange_ts=self.at(),
        )

    def fill(self, order: PlaceOrder, price: float | Decimal, trade: str, qty: int) -> OrderFilled:
        return OrderFilled(
            client_order_id=order.client_order_id,
            broker_order_id=f"b-{order.client_order_id}",
            trade_id=trade,
            symbol="INFY",
            side=order.side,
            product="MIS",
            quantity=qty,
            price=Decimal(f"{float(price):.2f}"),
            filled_at=self.at(),
        )


def accepted(order: PlaceOrder) -> OrderAccepted:
    return OrderAccepted(
        client_order_id=order.client_order_id, broker_order_id=f"b-{order.client_order_id}"
    )


def open_position(live: LiveEngine) -> tuple[PlaceOrder, float, Session]:
    for bar in infy_bars():
        orders = live.on_bar(bar)
        if orders:
            (entry,) = orders
            assert entry.product == "MIS"
            live.store.mark_published(entry.client_order_id)  # sent (test_live covers that)
            day = Session(bar.start)
            live.on_order_event(accepted(entry))
            live.on_order_event(day.fill(entry, bar.close, "t-entry", entry.quantity))
            return entry, float(bar.close), day
    raise AssertionError("swing never entered on the INFY fixture")


def publish(live: LiveEngine) -> list[PlaceOrder | ModifyOrder]:
    """What `publish_new` would send now: ModifyOrders, then the unpublished intents."""
    commands, wanted = live.protection_commands()
    live.protections_sent(wanted)
    assert not any(isinstance(c, ProtectPosition) for c in commands)  # no GTT for MIS
    out: list[PlaceOrder | ModifyOrder] = [c for c in commands if isinstance(c, ModifyOrder)]
    for order in live.store.unpublished():
        live.store.mark_published(order.client_order_id)
        out.append(order)
    return out


def cancels(live: LiveEngine) -> list[CancelOrder]:
    return [m for m in live.store.outbox_messages() if isinstance(m, CancelOrder)]


def protected(tmp_path: Path) -> tuple[LiveEngine, PlaceOrder, PlaceOrder, float, Session]:
    """An MIS position with its SL-M accepted at the exchange."""
    live = engine(tmp_path)
    entry, price, day = open_position(live)
    live.on_tick(day.tick(price))  # the market clock in the session
    (slm,) = publish(live)
    assert isinstance(slm, PlaceOrder)
    live.on_order_event(accepted(slm))
    return live, entry, slm, price, day


def test_an_mis_position_gets_an_sl_m_for_its_stop_that_follows_it(tmp_path: Path) -> None:
    live = engine(tmp_path)
    entry, price, day = open_position(live)
    # the entry bar's close is 15:30 on the market clock: no SL-M while the market is closed
    assert publish(live) == []
    live.on_tick(day.tick(price))
    (slm,) = publish(live)
    stop = Decimal(str(live.states[KEY].state["stop"]))
    assert isinstance(slm, PlaceOrder)
    assert (slm.side, slm.order_type, slm.product, slm.quantity) == (
        "SELL",
        "SL-M",
        "MIS",
        entry.quantity,
    )
    assert slm.trigger_price is not None
    assert slm.trigger_price <= stop < slm.trigger_price + Decimal("0.05")
    assert slm.client_order_id.startswith("P1-")
    assert publish(live) == []  # placed once

    # the stop moves: one ModifyOrder, and the engine takes the new terms once confirmed
    live.on_order_event(accepted(slm))
    live.states[KEY].state["stop"] = float(stop) + 3.0
    (modify,) = publish(live)
    assert isinstance(modify, ModifyOrder)
    assert modify.client_order_id == slm.client_order_id
    assert modify.trigger_price == slm.trigger_price + 3
    assert publish(live) == []  # asked once, not on every step
    live.on_order_event(
        OrderUpdated(
            client_order_id=slm.client_order_id,
            broker_order_id="b",
            status="TRIGGER PENDING",
            quantity=entry.quantity,
            trigger_price=modify.trigger_price,
        )
    )
    intent = live.store.intent(slm.client_order_id)
    assert intent is not None and intent.command.trigger_price == modify.trigger_price

    # a restarted engine knows its SL-M: nothing placed twice
    assert publish(engine(tmp_path)) == []


def test_nothing_is_placed_with_the_kill_switch_engaged(tmp_path: Path) -> None:
    live = engine(tmp_path)
    _entry, price, day = open_position(live)
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="test"))
    live.on_tick(day.tick(price))
    assert publish(live) == []


def test_a_target_waits_for_the_sl_m_to_be_cancelled_then_a_new_sl_m_covers_the_rest(
    tmp_path: Path,
) -> None:
    live, entry, slm, price, day = protected(tmp_path)
    st = live.states[KEY].state
    risk = price - st["stop"]
    (t1,) = live.on_tick(day.tick(price + risk + 0.05))  # target 1 reached intrabar
    assert t1.client_order_id.startswith("T1-")
    held = live.store.intent(t1.client_order_id)
    assert held is not None and held.status == "HELD"
    assert publish(live) == []  # not sent while the SL-M can still sell
    (cancel,) = cancels(live)
    assert (cancel.client_order_id, cancel.reason) == (slm.client_order_id, MAKE_WAY)

    # the broker reports the SL-M cancelled: target 1 goes out now
    released = live.on_order_event(
        OrderCancelled(client_order_id=slm.client_order_id, broker_order_id="b")
    )
    assert [o.client_order_id for o in released] == [t1.client_order_id]
    assert publish(live) == [t1]
    live.on_order_event(accepted(t1))
    live.on_order_event(day.fill(t1, price + risk, "t-t1", t1.quantity))
    left = entry.quantity - t1.quantity
    assert live.states[KEY].quantity == left

    # a fresh SL-M (a new id: the cancelled one is never placed again) for what is left
    (again,) = publish(live)
    assert isinstance(again, PlaceOrder)
    assert again.client_order_id.startswith("P2-")
    assert (again.order_type, again.quantity) == ("SL-M", left)


def test_the_sl_m_sold_first_so_the_held_exit_is_dropped(tmp_path: Path) -> None:
    live, entry, slm, price, day = protected(tmp_path)
    flat = live.flatten()  # the engine's own exit of the whole position
    (exit_id,) = flat["exits"]
    assert live.store.intent(exit_id).status == "HELD"  # type: ignore[union-attr]
    assert publish(live) == []
    # the SL-M triggered before the cancel reached the exchange: it sold everything
    live.on_order_event(day.fill(slm, price * 0.98, "t-slm", entry.quantity))
    assert live.open_positions() == []
    dropped = live.store.intent(exit_id)
    assert dropped is not None and (dropped.status, dropped.reason) == ("CANCELLED", SLM_SOLD)
    assert publish(live) == []  # nothing sold twice, nothing to protect
    assert live.status()["open_intents"] == 0


def test_a_partly_filled_sl_m_leaves_the_exit_only_what_is_still_held(tmp_path: Path) -> None:
    live, entry, slm, price, day = protected(tmp_path)
    flat = live.flatten()
    (exit_id,) = flat["exits"]
    # the cancel arrives before the fills it counts (they come from the trade book later)
    sold = entry.quantity // 3
    released = live.on_order_event(
        OrderCancelled(
            client_order_id=slm.client_order_id, broker_order_id="b", filled_quantity=sold
        )
    )
    (exit_order,) = released
    assert exit_order.client_order_id == exit_id
    assert exit_order.quantity == entry.quantity - sold
    assert publish(live) == [exit_order]
    # the SL-M's late fills, then the exit's: flat, never short
    live.on_order_event(day.fill(slm, price * 0.98, "t-slm", sold))
    assert live.states[KEY].quantity == entry.quantity - sold
    assert live.store.intent(slm.client_order_id).status == "CANCELLED"  # type: ignore[union-attr]
    live.on_order_event(accepted(exit_order))
    live.on_order_event(day.fill(exit_order, price * 0.97, "t-exit", exit_order.quantity))
    assert live.open_positions() == []
    assert publish(live) == []


def test_a_restarted_engine_releases_a_sell_whose_sl_m_went_while_it_was_down(
    tmp_path: Path,
) -> None:
    live, entry, slm, _price, _day = protected(tmp_path)
    (exit_id,) = live.flatten()["exits"]
    # the engine stored the SL-M's cancellation and died before releasing the exit
    live.store.set_intent_status(slm.client_order_id, "CANCELLED", "cancelled")
    restarted = engine(tmp_path)
    (exit_order,) = publish(restarted)
    assert isinstance(exit_order, PlaceOrder)
    assert (exit_order.client_order_id, exit_order.quantity) == (exit_id, entry.quantity)

    # and one whose SL-M still rests asks for its cancel again
    other = tmp_path / "other"
    other.mkdir()
    live2, _entry2, slm2, _p, _d = protected(other)
    live2.flatten()
    before = len(cancels(live2))
    again = engine(other)
    assert len(cancels(again)) == before + 1
    assert cancels(again)[-1].client_order_id == slm2.client_order_id


def test_the_engine_leaves_its_stop_to_the_sl_m_unless_the_exchange_refused_it(
    tmp_path: Path,
) -> None:
    live, _entry, _slm, _price, day = protected(tmp_path)
    stop = live.states[KEY].state["stop"]
    assert live.on_tick(day.tick(stop - 0.5)) == []  # the SL-M sells at the exchange

    refused_dir = tmp_path / "refused"
    refused_dir.mkdir()
    live2 = engine(refused_dir)
    _e, price2, day2 = open_position(live2)
    live2.on_tick(day2.tick(price2))
    (slm2,) = publish(live2)
    live2.on_order_event(
        OrderRejected(client_order_id=slm2.client_order_id, reason="input", message="trigger")
    )
    assert publish(live2) == []  # not placed again at the same stop
    stop2 = live2.states[KEY].state["stop"]
    (own,) = live2.on_tick(day2.tick(stop2 - 0.5))
    assert own.client_order_id.startswith("S-") and own.side == "SELL"
    assert live2.store.intent(own.client_order_id).status == "SUBMITTED"  # type: ignore[union-attr]


def test_no_sl_m_for_an_mis_position_of_an_earlier_session(tmp_path: Path) -> None:
    """Kite squares MIS positions off at 15:20; one the engine still holds from an earlier day
    gets no SL-M (it could only sell short)."""
    live = engine(tmp_path)
    _entry, price, day = open_position(live)
    later = Session(datetime.combine(day.day, time(0), tzinfo=IST))
    live.on_tick(later.tick(price))
    assert live.clock.now().date() == later.day
    assert publish(live) == []


def test_the_cancel_a_held_sell_waits_for_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel the broker could not act on (the SL-M had not reached Kite yet) is
    acknowledged and gone; the engine asks again while its sell waits."""
    live, _entry, slm, _price, _day = protected(tmp_path)
    live.flatten()
    commands, _wanted = live.protection_commands()
    assert commands == []  # asked once with the flatten; not again at once
    monkeypatch.setattr(live_module, "SLM_CANCEL_AGAIN_SECONDS", 0.0)
    commands, _wanted = live.protection_commands()
    assert commands == [CancelOrder(client_order_id=slm.client_order_id, reason=MAKE_WAY)]
