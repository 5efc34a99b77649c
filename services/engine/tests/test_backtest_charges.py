"""Same-day CNC round trips in the backtester are charged as Zerodha charges them: intraday for
the matched quantity. `sma_cross` on real 15-minute AXISBANK bars (Nov-Dec 2023) opens and
closes most positions within a day; every day where the bought and sold quantities match is
recomputed here with independent arithmetic at Zerodha's intraday rates of that date."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from pathlib import Path

import pytest

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, FillRecord
from dalal_engine.strategyconfig import validate_document
from dalal_shared.timeutil import to_ist

FIXTURES = Path(__file__).parent / "fixtures"


def paise(x: D) -> D:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


def intraday_by_hand(fills: list[FillRecord]) -> D:
    """Zerodha equity intraday, NSE, 2023-04-01 .. 2024-09-30: brokerage min(0.03%, Rs 20)
    per executed order, STT 0.025% of the sell value to the rupee, NSE 0.00322%, SEBI Rs 10 a
    crore, stamp 0.003% of the buy value, GST 18% on brokerage + NSE + SEBI."""
    buy_value = sum((f.price * f.quantity for f in fills if f.side == "BUY"), D(0))
    sell_value = sum((f.price * f.quantity for f in fills if f.side == "SELL"), D(0))
    brokerage = sum((min(paise(f.price * f.quantity * D("0.0003")), D(20)) for f in fills), D(0))
    stt = (sell_value * D("0.00025")).quantize(D(1), rounding=ROUND_HALF_UP)
    nse = paise((buy_value + sell_value) * D("0.0000322"))
    sebi = paise((buy_value + sell_value) * D(10) / D(10_000_000))
    stamp = paise(buy_value * D("0.00003"))
    gst = paise((brokerage + nse + sebi) * D("0.18"))
    return brokerage + stt + nse + sebi + stamp + gst


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    cfg = validate_document(
        {
            "name": "sameday",
            "strategy": "sma_cross",
            "interval": "15minute",
            "product": "CNC",
            "universe": ["AXISBANK"],
            "params": {"fast_bars": 3, "slow_bars": 8, "fixed_quantity": 100},
        }
    )[0]
    data = {"AXISBANK": history.load("AXISBANK", "15minute", data_dir=FIXTURES)}
    return Backtester(cfg, data).run()


def by_day(result: BacktestResult) -> dict[date, list[FillRecord]]:
    days: dict[date, list[FillRecord]] = defaultdict(list)
    for f in result.fills:
        days[to_ist(f.at).date()].append(f)
    return days


def test_same_day_cnc_round_trips_pay_intraday_charges_to_the_paisa(result: BacktestResult):
    days = by_day(result)
    flat_days = [
        fills
        for fills in days.values()
        if sum(f.quantity for f in fills if f.side == "BUY")
        == sum(f.quantity for f in fills if f.side == "SELL")
    ]
    assert len(flat_days) >= 10  # days that open and close their positions
    for fills in flat_days:
        assert sum(f.charges for f in fills) == intraday_by_hand(fills)
    # and the trades opened and closed on one such day carry exactly those charges
    same_day = [
        t for t in result.trades if to_ist(t.opened_at).date() == to_ist(t.closed_at).date()
    ]
    assert len(same_day) >= 20
    for trade in same_day:
        fills = days[to_ist(trade.opened_at).date()]
        if len(fills) == 2:  # the day's only round trip
            assert trade.charges == intraday_by_hand(fills)
            assert trade.net_pnl == trade.gross_pnl - intraday_by_hand(fills)


def test_the_account_pays_what_the_fills_say(result: BacktestResult):
    total = sum((f.charges for f in result.fills), D(0))
    assert result.charges.total == total
    assert result.charges.dp > 0  # positions held overnight are delivered and sold from demat
