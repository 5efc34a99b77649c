"""MIS positions end with their session, in the backtester and the live loop alike: Kite
squares MIS positions off from 15:20 IST (and charges for it), so an MIS instance on intraday
bars exits by itself at `mis_exit_at` (15:15 IST by default, leg Q) and opens nothing after
it. Real 15-minute AXISBANK bars (1,004 of them, 40 sessions)."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_fixtures import KNOWN

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import StrategyConfigError, validate_document
from dalal_shared.messages import Bar, OrderAccepted, OrderFilled, PlaceOrder
from dalal_shared.timeutil import to_ist

FIXTURES = Path(__file__).parent / "fixtures"


def config(product: str, **extra: Any) -> Any:
    return validate_document(
        {
            "name": "intraday",
            "strategy": "sma_cross",
            "interval": "15minute",
            "universe": ["AXISBANK"],
            "product": product,
            "params": {"fast_bars": 3, "slow_bars": 8, "fixed_quantity": 100},
            **extra,
        }
    )[0]


def backtest(product: str, **extra: Any) -> BacktestResult:
    data = {"AXISBANK": history.load("AXISBANK", "15minute", data_dir=FIXTURES)}
    return Backtester(config(product, **extra), data).run()


def test_mis_round_trips_end_the_day_they_start_cnc_ones_need_not() -> None:
    cnc = backtest("CNC")
    assert any(to_ist(t.opened_at).date() != to_ist(t.closed_at).date() for t in cnc.trades)

    mis = backtest("MIS")
    assert len(mis.trades) > 10
    for trade in mis.trades:
        opened, closed = to_ist(trade.opened_at), to_ist(trade.closed_at)
        assert opened.date() == closed.date(), trade
        assert closed.time() < time(15, 20), trade  # before Kite's square-off
        assert opened.time() < time(15, 15), trade  # nothing new from 15:15
    squared = [f for f in mis.fills if f.client_order_id.startswith("Q-")]
    assert squared and all(f.side == "SELL" for f in squared)

    earlier = backtest("MIS", mis_exit_at="14:00")
    for trade in earlier.trades:
        assert to_ist(trade.closed_at).time() <= time(14, 15), trade


def test_the_live_loop_squares_off_on_the_same_bars_as_the_backtester(tmp_path: Path) -> None:
    """The live engine fed the same bars, its orders filled at the next bar's open (as the
    backtester fills them), sends the same orders."""
    result = backtest("MIS")
    expected = [(f.client_order_id, f.side, f.quantity) for f in result.fills]

    live = LiveEngine(
        [config("MIS")],
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    series = history.load("AXISBANK", "15minute", data_dir=FIXTURES)
    sent: list[tuple[str, str, int]] = []
    pending: list[PlaceOrder] = []
    for i in range(len(series)):
        bar = Bar(
            symbol="AXISBANK",
            interval="15minute",
            start=series.start[i],
            open=Decimal(f"{series.open[i]:.2f}"),
            high=Decimal(f"{series.high[i]:.2f}"),
            low=Decimal(f"{series.low[i]:.2f}"),
            close=Decimal(f"{series.close[i]:.2f}"),
            volume=int(series.volume[i]),
        )
        for order in pending:  # filled at this bar's open
            coid = order.client_order_id
            live.on_order_event(OrderAccepted(client_order_id=coid, broker_order_id=coid))
            live.on_order_event(
                OrderFilled(
                    client_order_id=coid,
                    broker_order_id=coid,
                    trade_id=f"t-{coid}",
                    symbol="AXISBANK",
                    side=order.side,
                    product="MIS",
                    quantity=order.quantity,
                    price=bar.open,
                    filled_at=bar.start,
                )
            )
        pending = live.on_bar(bar)
        sent.extend((o.client_order_id, o.side, o.quantity) for o in pending)
    assert sent[: len(expected)] == expected
    assert any(coid.startswith("Q-") for coid, _side, _qty in sent)


def test_mis_exit_at_is_checked() -> None:
    with pytest.raises(StrategyConfigError, match="mis_exit_at"):
        config("MIS", mis_exit_at="15:25")
