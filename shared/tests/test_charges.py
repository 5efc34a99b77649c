"""Worked examples computed by hand (each figure's arithmetic is in the comment beside it)."""

from datetime import date
from decimal import Decimal as D

import pytest

from dalal_shared.charges import (
    RATE_HISTORY,
    RatesNotKnownError,
    auto_square_off_charge,
    dp_charge,
    order_charges,
    rates_on,
)

DAY_2025 = date(2025, 3, 3)


def test_intraday_round_trip_2025():
    # Buy 100 @ 1000 MIS: turnover 1,00,000.
    buy = order_charges("BUY", "MIS", 100, D("1000"), DAY_2025)
    assert buy.brokerage == D("20.00")  # min(0.03% x 100000 = 30, 20)
    assert buy.stt == D("0")  # intraday STT is sell side only
    assert buy.transaction == D("2.97")  # 0.00297% x 100000
    assert buy.sebi == D("0.10")  # 10 / 1e7 x 100000
    assert buy.stamp == D("3.00")  # 0.003% x 100000
    assert buy.gst == D("4.15")  # 18% x (20 + 2.97 + 0.10) = 4.1526
    assert buy.total == D("30.22")
    # Sell 100 @ 1010 MIS: turnover 1,01,000.
    sell = order_charges("SELL", "MIS", 100, D("1010"), DAY_2025)
    assert sell.brokerage == D("20.00")  # min(30.30, 20)
    assert sell.stt == D("25.00")  # 0.025% x 101000 = 25.25 -> nearest rupee
    assert sell.transaction == D("3.00")  # 0.00297% x 101000 = 2.9997
    assert sell.sebi == D("0.10")  # 0.101
    assert sell.stamp == D("0")  # buy side only
    assert sell.gst == D("4.16")  # 18% x 23.10 = 4.158
    assert (buy + sell).total == D("82.48")


def test_small_intraday_order_pays_percentage_brokerage():
    # 10 x 500 = 5,000: 0.03% = 1.50 < 20.
    c = order_charges("BUY", "MIS", 10, D("500"), DAY_2025)
    assert c.brokerage == D("1.50")
    assert c.transaction == D("0.15")  # 0.1485
    assert c.sebi == D("0.01")  # 0.005 -> half up
    assert c.stamp == D("0.15")  # 0.003% x 5000
    assert c.gst == D("0.30")  # 18% x 1.66 = 0.2988


def test_delivery_buy_and_sell_2025():
    buy = order_charges("BUY", "CNC", 10, D("2500"), DAY_2025)  # turnover 25,000
    assert buy.brokerage == D("0.00")
    assert buy.stt == D("25.00")  # 0.1% x 25000
    assert buy.transaction == D("0.74")  # 0.7425
    assert buy.sebi == D("0.03")  # 0.025 -> half up
    assert buy.stamp == D("3.75")  # 0.015% x 25000
    assert buy.gst == D("0.14")  # 18% x 0.77 = 0.1386
    assert buy.total == D("29.66")
    sell = order_charges("SELL", "CNC", 10, D("2600"), DAY_2025)  # turnover 26,000
    assert sell.stt == D("26.00")
    assert sell.transaction == D("0.77")  # 0.7722
    assert sell.stamp == D("0")
    assert sell.gst == D("0.14")  # 18% x 0.80 = 0.144
    assert sell.total == D("26.94")


def test_dp_charge_per_scrip():
    dp = dp_charge(DAY_2025)
    assert dp.dp == D("13.00")
    assert dp.gst == D("2.34")
    assert dp.total == D("15.34")
    assert dp_charge(date(2023, 6, 1)).total == D("15.93")  # 13.50 + 2.43


def test_transaction_rate_history():
    assert rates_on(date(2020, 7, 1)).nse_transaction_pct == D("0.00325")
    assert rates_on(date(2021, 1, 1)).nse_transaction_pct == D("0.00345")  # NSE's 6% rise
    assert rates_on(date(2023, 3, 31)).nse_transaction_pct == D("0.00345")
    assert rates_on(date(2023, 4, 1)).nse_transaction_pct == D("0.00322")  # rolled back
    assert rates_on(date(2024, 9, 30)).nse_transaction_pct == D("0.00322")
    assert rates_on(date(2024, 10, 1)).nse_transaction_pct == D("0.00297")
    # The same order before and after the 2024-10-01 change: 100000 x 0.00322% = 3.22.
    assert order_charges("BUY", "MIS", 100, D("1000"), date(2024, 9, 30)).transaction == D("3.22")
    assert order_charges("BUY", "MIS", 100, D("1000"), date(2024, 10, 1)).transaction == D("2.97")


def test_history_is_ordered_and_has_sources():
    starts = [r.effective_from for r in RATE_HISTORY]
    assert starts == sorted(starts)
    assert all(r.source for r in RATE_HISTORY)


def test_auto_square_off_fee():
    fee = auto_square_off_charge(DAY_2025)
    assert fee.other == D("50.00")
    assert fee.gst == D("9.00")


def test_refuses_unknown_dates_and_bad_quantity():
    with pytest.raises(RatesNotKnownError):
        order_charges("BUY", "CNC", 1, D("100"), date(2019, 1, 1))
    with pytest.raises(ValueError, match="quantity"):
        order_charges("BUY", "CNC", 0, D("100"), DAY_2025)


def test_breakdowns_add_and_subtract_field_by_field() -> None:
    from dataclasses import fields

    from dalal_shared.charges import ChargesBreakdown

    names = [f.name for f in fields(ChargesBreakdown)]
    a = ChargesBreakdown(*(D(k + 1) for k in range(len(names))))
    b = ChargesBreakdown(*(D(10 * (k + 1)) for k in range(len(names))))
    for name in names:  # every component, none left out by a hand-written sum
        assert getattr(a + b, name) == getattr(a, name) + getattr(b, name)
        assert getattr(b - a, name) == getattr(b, name) - getattr(a, name)
