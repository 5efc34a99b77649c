"""Properties of the charges model (hypothesis): booking per fill is exact at every moment,
charges add up across days and scrips, grow with every MIS fill, do not depend on the order of
fills beyond the per-order brokerage, and a balanced CNC day costs what the same trades as MIS
do."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_shared.charges import DayCharges, ScripDay, TradeFill, day_charges, dp_charge

DAY = date(2025, 3, 3)


@st.composite
def fills(draw: st.DrawFn, min_size: int = 1) -> list[TradeFill]:
    n = draw(st.integers(min_size, 12))
    return [
        TradeFill(
            f"o{draw(st.integers(0, 5))}{side}",
            side,  # type: ignore[arg-type]
            draw(st.integers(1, 500)),
            D(draw(st.integers(100, 100_000)) * 5) / 100,  # Rs 1 .. 5,000 on the 0.05 grid
        )
        for side in (draw(st.sampled_from(["BUY", "SELL"])) for _ in range(n))
    ]


@settings(max_examples=200, deadline=None)
@given(day=fills(), product=st.sampled_from(["CNC", "MIS"]))
def test_booking_per_fill_is_exact_after_every_fill(day: list[TradeFill], product: str):
    book = ScripDay(product, DAY)
    paid = []
    for k, fill in enumerate(day):
        paid.append(book.add(fill))
        total = paid[0]
        for p in paid[1:]:
            total = total + p
        assert total == day_charges(day[: k + 1], product, DAY)


@settings(max_examples=200, deadline=None)
@given(day=fills(), more=fills(), data=st.data())
def test_mis_charges_grow_with_every_fill_and_ignore_order(
    day: list[TradeFill], more: list[TradeFill], data: st.DataObject
):
    before = day_charges(day, "MIS", DAY)
    after = day_charges(day + more, "MIS", DAY)
    assert after.total >= before.total
    for part in ("brokerage", "stt", "transaction", "sebi", "stamp"):
        assert getattr(after, part) >= getattr(before, part)
    shuffled = data.draw(st.permutations(day))
    assert day_charges(shuffled, "MIS", DAY) == before


@settings(max_examples=200, deadline=None)
@given(day=fills(), data=st.data())
def test_cnc_netting_depends_on_the_set_of_fills_except_brokerage(
    day: list[TradeFill], data: st.DataObject
):
    a = day_charges(day, "CNC", DAY)
    b = day_charges(data.draw(st.permutations(day)), "CNC", DAY)
    for part in ("stt", "transaction", "sebi", "stamp", "dp"):
        assert getattr(a, part) == getattr(b, part)
    bought = sum(f.quantity for f in day if f.side == "BUY")
    sold = sum(f.quantity for f in day if f.side == "SELL")
    assert a.dp == (dp_charge(DAY).dp if sold > bought else 0)  # once, when delivered out


@settings(max_examples=200, deadline=None)
@given(buys=fills(), data=st.data())
def test_a_balanced_cnc_day_costs_what_mis_does(buys: list[TradeFill], data: st.DataObject):
    """Sell what was bought, in other orders and at other prices: all intraday."""
    day = [TradeFill(f.order_id, "BUY", f.quantity, f.price) for f in buys]  # type: ignore[arg-type]
    left = sum(f.quantity for f in day)
    k = 0
    while left:
        q = data.draw(st.integers(1, left))
        price = D(data.draw(st.integers(100, 100_000)) * 5) / 100
        day.append(TradeFill(f"s{k}", "SELL", q, price))  # type: ignore[arg-type]
        left, k = left - q, k + 1
    order = data.draw(st.permutations(day))
    assert day_charges(order, "CNC", DAY) == day_charges(order, "MIS", DAY)


@settings(max_examples=100, deadline=None)
@given(days=st.lists(fills(), min_size=1, max_size=4), product=st.sampled_from(["CNC", "MIS"]))
def test_charges_add_up_across_days_and_scrips(days: list[list[TradeFill]], product: str):
    book = DayCharges()
    expected = None
    for k, day in enumerate(days):
        on = date(2025, 3, 3 + k)
        for fill in day:
            book.add("NSE", f"S{k % 2}", product, on, fill)
        c = day_charges(day, product, on)
        expected = c if expected is None else expected + c
    assert book.total() == expected
