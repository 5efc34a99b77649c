"""`exchange_stop: true`: a swing position's stop is kept at the exchange as a protection (a
GTT at the broker) for the whole quantity, re-sent when the quantity changes, cancelled before
the engine's own exit goes, sent again by a restarted engine; the GTT's order (leg G) closes
the position when it fills. Real INFY daily bars, a real SQLite store."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from engine_fixtures import KNOWN, infy_bars

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategies.swing import Swing
from dalal_engine.strategy import Level, PositionView, register, registry
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import CancelProtection, OrderFilled, PlaceOrder, ProtectPosition, Tick
from dalal_shared.timeutil import IST

SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
exchange_stop: true
"""


def engine(tmp_path: Path) -> LiveEngine:
    live = LiveEngine(
        load_text(SWING),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    return live


def fill(order: PlaceOrder, price: str, trade: str, quantity: int | None = None) -> OrderFilled:
    return OrderFilled(
        client_order_id=order.client_order_id,
        broker_order_id="b",
        trade_id=trade,
        symbol="INFY",
        side=order.side,
        product="CNC",
        quantity=quantity or order.quantity,
        price=Decimal(price),
        filled_at=datetime(2021, 1, 5, 11, tzinfo=IST),
    )


def tick(price: float, minute: int = 0) -> Tick:
    return Tick(
        instrument_token=408065,
        symbol="INFY",
        last_price=Decimal(f"{price:.2f}"),
        exchange_ts=datetime(2021, 1, 5, 10, minute, tzinfo=IST),
    )


def open_position(live: LiveEngine) -> tuple[PlaceOrder, float]:
    for bar in infy_bars():
        orders = live.on_bar(bar)
        if orders:
            (entry,) = orders
            live.on_order_event(fill(entry, str(bar.close), "t-entry"))
            return entry, float(bar.close)
    raise AssertionError("swing never entered on the INFY fixture")


def sent(live: LiveEngine) -> list[ProtectPosition | CancelProtection]:
    commands, wanted = live.protection_commands()
    live.protections_sent(wanted)
    return commands


def test_the_stop_is_kept_at_the_exchange_and_follows_the_position(tmp_path: Path) -> None:
    live = engine(tmp_path)
    assert sent(live) == []  # flat: nothing to protect
    entry, price = open_position(live)
    st = live.states[("sw", "INFY")]
    (protect,) = sent(live)
    assert isinstance(protect, ProtectPosition)
    assert (protect.symbol, protect.quantity, protect.strategy) == ("INFY", entry.quantity, "sw")
    assert (
        protect.stop_price <= Decimal(str(st.state["stop"])) < protect.stop_price + Decimal("0.05")
    )  # the strategy's stop, down to the tick
    assert protect.client_order_id.startswith("G-")
    assert sent(live) == []  # unchanged: nothing sent again

    # a restarted engine sends it again (the broker keeps one GTT for the same terms)
    again = engine(tmp_path)
    assert sent(again) == [protect]

    # target 1 sells a third: the protection follows the quantity left
    risk = price - st.state["stop"]
    (reduce,) = again.on_tick(tick(price + risk + 0.05, 1))
    again.on_order_event(fill(reduce, f"{price + risk:.2f}", "t-t1"))
    (smaller,) = sent(again)
    assert isinstance(smaller, ProtectPosition)
    assert smaller.client_order_id == protect.client_order_id
    assert smaller.quantity == entry.quantity - reduce.quantity

    # the engine's own stop exit: the GTT is cancelled first, in the same publication
    (stop_exit,) = again.on_tick(tick(float(smaller.stop_price) - 0.10, 2))
    assert stop_exit.client_order_id.startswith("S-")
    (cancel,) = sent(again)
    assert isinstance(cancel, CancelProtection)
    assert cancel.client_order_id == protect.client_order_id


def test_the_gtt_order_fills_close_the_position(tmp_path: Path) -> None:
    live = engine(tmp_path)
    entry, _price = open_position(live)
    (protect,) = sent(live)
    # the GTT fired at the exchange while the engine was down; its fills come under its id
    gtt_order = PlaceOrder(
        client_order_id=protect.client_order_id,
        symbol="INFY",
        side="SELL",
        quantity=protect.quantity,
    )
    restarted = engine(tmp_path)
    restarted.on_order_event(fill(gtt_order, str(protect.stop_price), "t-gtt-1", 1))
    assert restarted.states[("sw", "INFY")].quantity == entry.quantity - 1
    restarted.on_order_event(
        fill(gtt_order, str(protect.stop_price), "t-gtt-2", entry.quantity - 1)
    )
    assert restarted.open_positions() == []
    intent = restarted.store.intent(protect.client_order_id)
    assert intent is not None and intent.status == "COMPLETE"
    assert sent(restarted) == []  # nothing held, nothing sent (this engine sent none before)


def test_exchange_stop_is_a_gtt_for_cnc_and_an_sl_m_for_mis() -> None:
    (cnc,) = load_text(SWING)
    (mis,) = load_text(SWING + "product: MIS\n")
    assert (cnc.product, cnc.exchange_stop) == ("CNC", True)
    assert (mis.product, mis.exchange_stop) == ("MIS", True)


class WholeTargetSwing(Swing):
    """swing with one more target, at 3 R, that sells all that is left (no built-in strategy
    has one: swing's targets are partial and the rest trails)."""

    name: ClassVar[str] = "swing_whole_target_test"

    def levels(self, position: PositionView, state: dict[str, Any]) -> list[Level]:
        out = super().levels(position, state)
        if out:
            final = state["entry_price"] + 3 * state["risk_per_share"]
            out.append(Level("T3", "target", final, None))
        return out


def test_a_target_that_sells_the_whole_position_rides_as_the_gtts_second_leg(
    tmp_path: Path,
) -> None:
    if WholeTargetSwing.name not in registry():
        register(WholeTargetSwing)
    live = LiveEngine(
        load_text(SWING.replace("strategy: swing", f"strategy: {WholeTargetSwing.name}")),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    entry, _price = open_position(live)
    (oco,) = sent(live)
    assert isinstance(oco, ProtectPosition)
    st = live.states[("sw", "INFY")].state
    final = Decimal(str(st["entry_price"] + 3 * st["risk_per_share"]))
    assert oco.quantity == entry.quantity
    assert oco.target_price is not None
    assert final <= oco.target_price < final + Decimal("0.05")  # up to the tick
    assert oco.stop_price < oco.target_price


def test_partial_targets_stay_with_the_engine(tmp_path: Path) -> None:
    live = engine(tmp_path)
    open_position(live)
    (protect,) = sent(live)
    assert isinstance(protect, ProtectPosition)
    assert protect.target_price is None  # swing's targets sell a third each: not the GTT's
