"""Guards before anything goes to Kite (domain code, no Kite, no Redis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from dalal_broker.orders import GuardContext, admit, market_protection
from dalal_shared.calendar import nse_calendar
from dalal_shared.messages import PlaceOrder
from dalal_shared.timeutil import IST

OPEN_TUESDAY = datetime(2024, 1, 2, 11, 0, tzinfo=IST)
CTX = GuardContext(
    session_valid=True,
    kill_switch_reason=None,
    now=OPEN_TUESDAY,
    calendar=nse_calendar(),
    max_order_value_rupees=Decimal("100000"),
)


def order(**kw) -> PlaceOrder:
    values = {
        "client_order_id": "g1",
        "symbol": "INFY",
        "side": "BUY",
        "quantity": 10,
        "order_type": "LIMIT",
        "price": Decimal("1500"),
    }
    values.update(kw)
    return PlaceOrder(**values)


def reason(o: PlaceOrder, ctx: GuardContext = CTX) -> str | None:
    rejection = admit(o, ctx)
    return None if rejection is None else rejection.reason


def test_a_sound_order_passes() -> None:
    assert reason(order()) is None


def test_kill_switch_wins_over_everything() -> None:
    assert (
        reason(order(), replace(CTX, kill_switch_reason="loss", session_valid=False))
        == "kill_switch"
    )


def test_no_session() -> None:
    assert reason(order(), replace(CTX, session_valid=False)) == "no_session"


@pytest.mark.parametrize(
    ("order_type", "price", "trigger", "ok"),
    [
        ("MARKET", None, None, False),  # no reference price: refused (see below)
        ("LIMIT", None, None, False),
        ("SL", Decimal("10"), None, False),
        ("SL", Decimal("10"), Decimal("9.5"), True),
        ("SL-M", None, None, False),
        ("SL-M", None, Decimal("9.5"), True),
    ],
)
def test_price_fields_required_by_order_type(order_type, price, trigger, ok) -> None:
    o = order(order_type=order_type, price=price, trigger_price=trigger)
    assert (reason(o) is None) == ok
    if not ok:
        assert reason(o) == ("no_reference_price" if order_type == "MARKET" else "input")


def test_max_order_value_uses_price_or_reference() -> None:
    assert reason(order(quantity=100)) == "max_order_value"  # 1,50,000 > 1,00,000
    market = order(order_type="MARKET", price=None, quantity=100)
    assert reason(market, replace(CTX, reference_price=Decimal("1500"))) == "max_order_value"


def test_a_market_order_without_a_reference_price_is_refused() -> None:
    market = order(order_type="MARKET", price=None, quantity=1)
    assert reason(market) == "no_reference_price"
    assert reason(market, replace(CTX, reference_price=Decimal("1500"))) is None


def test_a_market_order_is_valued_at_its_reference_widened_by_its_protection() -> None:
    ctx = replace(CTX, reference_price=Decimal("1000"), market_protection_pct=Decimal("3"))
    # 97 x 1,030 = 99,910 passes; 98 x 1,030 = 1,00,940 is over (98 x 1,000 alone would pass)
    assert reason(order(order_type="MARKET", price=None, quantity=97), ctx) is None
    assert reason(order(order_type="MARKET", price=None, quantity=98), ctx) == "max_order_value"
    # its own protection wins over the default: 1% -> 98 x 1,010 = 98,980 passes
    own = order(order_type="MARKET", price=None, quantity=98, market_protection=Decimal("1"))
    assert reason(own, ctx) is None
    # SL-M: its trigger widened the same way
    slm = order(order_type="SL-M", price=None, trigger_price=Decimal("1000"), quantity=98)
    assert reason(slm, ctx) == "max_order_value"


def test_live_capital_cap_counts_open_orders() -> None:
    ctx = replace(
        CTX, capital_cap_rupees=Decimal("50000"), open_orders_value_rupees=Decimal("40000")
    )
    assert reason(order(quantity=10), ctx) == "capital_cap"  # 40,000 + 15,000
    assert reason(order(quantity=5), ctx) is None
    market = order(order_type="MARKET", price=None, quantity=11)  # 40,000 + 11,000
    assert reason(market, replace(ctx, reference_price=Decimal("1000"))) == "capital_cap"
    # open orders that cannot be priced: no new buy under the cap, a sell still goes
    unknown = replace(ctx, open_orders_value_rupees=None)
    assert reason(order(quantity=1), unknown) == "no_reference_price"
    assert reason(order(quantity=1, side="SELL"), unknown) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 1, 2, 9, 0, tzinfo=IST), "market_closed"),  # before the open
        (datetime(2024, 1, 2, 15, 31, tzinfo=IST), "market_closed"),
        (datetime(2024, 1, 6, 11, 0, tzinfo=IST), "market_closed"),  # a Saturday
        (datetime(2024, 1, 26, 11, 0, tzinfo=IST), "market_closed"),  # Republic Day
        (datetime(2024, 1, 2, 15, 25, tzinfo=IST), None),  # CNC after 15:20 is fine
    ],
)
def test_market_hours_and_holidays(now: datetime, expected: str | None) -> None:
    assert reason(order(), replace(CTX, now=now)) == expected


def test_amo_may_be_sent_when_the_market_is_closed() -> None:
    night = replace(CTX, now=datetime(2024, 1, 2, 20, 0, tzinfo=IST))
    assert reason(order(variety="amo"), night) is None


def test_no_fresh_mis_after_1520() -> None:
    late = replace(CTX, now=datetime(2024, 1, 2, 15, 21, tzinfo=IST))
    assert reason(order(product="MIS"), late) == "mis_cutoff"
    assert reason(order(product="MIS")) is None


def test_market_protection_is_sent_on_market_orders_only() -> None:
    assert market_protection(order(order_type="MARKET", price=None), Decimal("3")) == 3
    assert (
        market_protection(
            order(order_type="MARKET", price=None, market_protection=Decimal("1")), Decimal("3")
        )
        == 1
    )
    assert market_protection(order(), Decimal("3")) is None


def test_past_the_holiday_list_weekday_hours_still_admit_orders() -> None:
    """NSE publishes its holidays a year at a time; past the list's end an order (a stop's
    exit above all) is not refused for want of it: weekdays 09:15-15:30 count as open."""
    from datetime import date

    from dalal_shared.calendar import NseCalendar

    ctx = replace(CTX, calendar=NseCalendar({}, date(2024, 1, 1), date(2024, 12, 31)))
    monday = datetime(2025, 1, 6, 11, 0, tzinfo=IST)
    assert reason(order(side="SELL"), replace(ctx, now=monday)) is None
    assert reason(order(), replace(ctx, now=monday.replace(hour=16))) == "market_closed"
    assert (
        reason(order(), replace(ctx, now=datetime(2025, 1, 4, 11, tzinfo=IST))) == "market_closed"
    )
