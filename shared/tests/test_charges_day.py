"""The day-netting rule of `dalal_shared.charges`: one scrip's fills of one day decide whether a
CNC buy is delivery or intraday. Each figure's arithmetic is in the comment beside it; the
sources of the rules are in the module docstring."""

from datetime import date
from decimal import Decimal as D

import pytest

from dalal_shared.charges import (
    DayCharges,
    ScripDay,
    TradeFill,
    day_charges,
    dp_charge,
    order_charges,
)

DAY = date(2025, 3, 3)
NEXT = date(2025, 3, 4)


def buy(qty: int, price: str, order: str = "b") -> TradeFill:
    return TradeFill(order, "BUY", qty, D(price))  # type: ignore[arg-type]


def sell(qty: int, price: str, order: str = "s") -> TradeFill:
    return TradeFill(order, "SELL", qty, D(price))  # type: ignore[arg-type]


def test_zerodha_calculator_intraday_example():
    """Zerodha's brokerage calculator (https://zerodha.com/brokerage-calculator), equity
    intraday, its default trade: buy 400 @ 1000, sell 400 @ 1100, NSE, at the 2021-2023 NSE
    rate 0.00345%. The calculator showed: brokerage 40, STT total 110, exchange txn charge
    28.98, GST 12.42, SEBI charges 0.99, stamp duty 12, total tax and charges 204.39 (figures
    as quoted from the calculator at https://heidelbergsusa.com/calculate-intraday-charges-zerodha/35369226).
    The calculator shows SEBI with its GST (0.84 + 0.15) and GST on brokerage + transaction
    only (18% x 68.98 = 12.42); we put GST on all three (18% x 69.82 = 12.57): the same total."""
    fills = [buy(400, "1000"), sell(400, "1100")]
    for product in ("MIS", "CNC"):  # a same-day CNC round trip is charged as intraday
        c = day_charges(fills, product, date(2022, 6, 1))
        assert c.brokerage == D("40.00")  # 2 x min(0.03% x 4,00,000 = 120, 20)
        assert c.stt == D("110.00")  # 0.025% x 4,40,000 sell value
        assert c.transaction == D("28.98")  # 0.00345% x 8,40,000
        assert c.sebi == D("0.84")  # 10 / 1e7 x 8,40,000
        assert c.stamp == D("12.00")  # 0.003% x 4,00,000 buy value
        assert c.sebi + c.gst == D("0.99") + D("12.42")
        assert c.dp == 0
        assert c.total == D("204.39")


def test_stt_is_rounded_to_the_rupee_as_zerodhas_calculator_shows():
    """Buy 100 @ 100, sell 100 @ 101 intraday: 0.025% x 10,100 = 2.525, and Zerodha's
    calculator shows STT 3.00 ("STT is rounded off to the nearest rupee", Zerodha's answer at
    https://tradingqna.com/t/stt-zerodha-brokerage-calculator/21903)."""
    c = day_charges([buy(100, "100"), sell(100, "101")], "CNC", DAY)
    assert c.stt == D("3.00")
    assert c.dp == 0


def test_same_day_cnc_round_trip_costs_what_mis_does_and_far_less_than_delivery():
    fills = [buy(100, "1000"), sell(100, "1010")]
    cnc = day_charges(fills, "CNC", DAY)
    assert cnc == day_charges(fills, "MIS", DAY)
    assert cnc.total == D("82.48")  # 40 + 25 (25.25) + 5.97 + 0.20 + 3.00 + 8.31 (8.3106)
    # what the backtester charged before (delivery both legs and a DP charge)
    delivery = (
        order_charges("BUY", "CNC", 100, D("1000"), DAY)
        + order_charges("SELL", "CNC", 100, D("1010"), DAY)
        + dp_charge(DAY)
    )
    # buy: STT 100, txn 2.97, SEBI 0.10, stamp 15, GST 0.55 = 118.62; sell: STT 101, txn 3.00,
    # SEBI 0.10, GST 0.56 = 104.66; DP 15.34
    assert delivery.total == D("238.62")


def test_partly_sold_the_same_day_is_intraday_for_the_matched_quantity():
    """Buy 100 @ 1000 CNC, sell 60 @ 1010 the same day: 60 intraday, 40 delivered in."""
    c = day_charges([buy(100, "1000"), sell(60, "1010")], "CNC", DAY)
    # brokerage on each order's intraday value: buy 60 x 1000 x 0.03% = 18; sell 60,600 -> 18.18
    assert c.brokerage == D("36.18")
    # STT: 0.1% x 40,000 delivery buy + 0.025% x 60,600 intraday sell = 40 + 15.15 -> 55
    assert c.stt == D("55.00")
    # stamp: 0.015% x 40,000 + 0.003% x 60,000 = 6 + 1.80
    assert c.stamp == D("7.80")
    assert c.transaction == D("4.77")  # 0.00297% x 1,60,600 = 4.7698
    assert c.sebi == D("0.16")
    assert c.gst == D("7.40")  # 18% x (36.18 + 4.77 + 0.16) = 7.3998
    assert c.dp == 0  # nothing left the demat account
    assert c.total == D("111.31")


def test_btst_sell_is_delivery_and_pays_dp():
    """Bought on day T, sold on T+1 before the shares reach the demat: Zerodha charges DP on
    BTST sells since 2021-06-02 (support.zerodha.com ... dp-charges-for-btst-trades)."""
    t0 = day_charges([buy(10, "2500")], "CNC", DAY)
    t1 = day_charges([sell(10, "2600")], "CNC", NEXT)
    assert t0.total == D("29.66")  # STT 25, txn 0.74, SEBI 0.03, stamp 3.75, GST 0.14
    assert t1.dp == D("13.00")
    assert t1.total == D("26.94") + D("15.34")  # delivery sell + DP 13 + GST 2.34


def test_selling_holdings_and_buying_back_the_same_day_nets_to_intraday():
    c = day_charges([sell(50, "900", "s1"), buy(50, "890", "b1")], "CNC", DAY)
    assert c.dp == 0
    assert c.stt == D("11.00")  # 0.025% x 45,000 = 11.25 -> 11
    assert c.stamp == D("1.34")  # 0.003% x 44,500 = 1.335 -> half up
    assert c.brokerage == D("26.85")  # 0.03% x 45,000 = 13.50; x 44,500 = 13.35


def test_selling_more_than_bought_the_same_day_delivers_the_rest_out_once():
    # holding 100; buy 50 and sell 100 in two orders: 50 intraday, 50 delivered out
    c = day_charges([buy(50, "100"), sell(60, "101", "s1"), sell(40, "102", "s2")], "CNC", DAY)
    # sells FIFO: s1 is intraday for 50 of its 60, s2 is delivery
    # buy 0.03% x 5,000 = 1.50; s1 50/60 of 6,060 = 5,050 -> 1.515 -> 1.52; s2 nothing
    assert c.brokerage == D("3.02")
    assert c.dp == D("13.00")  # once, however many delivery sells
    # sell WAP 101.40: intraday sell 50 x 101.4 = 5,070, delivery sell 5,070
    assert c.stt == D("6.00")  # 0.025% x 5070 + 0.1% x 5070 = 1.2675 + 5.07 = 6.3375 -> 6


def test_brokerage_is_per_executed_order_not_per_fill():
    one_order = day_charges([buy(100, "1000", "o"), buy(100, "1000", "o")], "MIS", DAY)
    two_orders = day_charges([buy(100, "1000", "o1"), buy(100, "1000", "o2")], "MIS", DAY)
    assert one_order.brokerage == D("20.00")  # 0.03% x 2,00,000 = 60 -> capped once
    assert two_orders.brokerage == D("40.00")


def test_stt_is_rounded_on_the_scrip_day_total():
    # three intraday sells of 0.025% x 2,000 = 0.50 each: per order 3 x 1 = 3, per day 1.50 -> 2
    fills = [buy(60, "100")] + [sell(20, "100", f"s{i}") for i in range(3)]
    assert day_charges(fills, "MIS", DAY).stt == D("2.00")


def test_each_fill_pays_the_increase_of_its_day():
    day = ScripDay("CNC", DAY)
    first = day.add(buy(100, "1000"))
    assert first == order_charges("BUY", "CNC", 100, D("1000"), DAY)  # delivery until sold
    second = day.add(sell(100, "1010"))
    assert second.stt == D("25.00") - D("100.00")  # intraday sell STT; the buy's 100 given back
    assert first + second == day.total == day_charges(day_fills(), "CNC", DAY)


def day_fills() -> list[TradeFill]:
    return [buy(100, "1000"), sell(100, "1010")]


def test_day_charges_keeps_scrips_days_and_products_apart():
    book = DayCharges()
    book.add("NSE", "INFY", "CNC", DAY, buy(100, "1000"))
    book.add("NSE", "TCS", "CNC", DAY, sell(100, "1010"))  # another scrip: no netting
    book.add("NSE", "INFY", "CNC", NEXT, sell(100, "1010"))  # another day: BTST
    expected = (
        order_charges("BUY", "CNC", 100, D("1000"), DAY)
        + order_charges("SELL", "CNC", 100, D("1010"), DAY)
        + dp_charge(DAY)
        + order_charges("SELL", "CNC", 100, D("1010"), NEXT)
        + dp_charge(NEXT)
    )
    assert book.total() == expected
    assert book.total(NEXT).dp == D("13.00")
    book.forget_before(NEXT)
    assert book.total() == book.total(NEXT)


def test_bad_fills_are_refused():
    with pytest.raises(ValueError, match="quantity"):
        TradeFill("o", "BUY", 0, D("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="HOLD"):
        TradeFill("o", "HOLD", 1, D("1"))  # type: ignore[arg-type]
