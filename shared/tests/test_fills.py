from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from dalal_shared.fills import (
    Bar,
    FillConfig,
    OrderTerms,
    OrderType,
    Side,
    Tick,
    bar_capacity,
    is_triggered,
    match,
    protection_limit,
    quote_price,
    round_to_tick,
    tick_path,
)

START = datetime(2024, 3, 5, 3, 45, tzinfo=UTC)
BAR = Bar(START, D("100"), D("104"), D("98"), D("102"), 8000)
CFG = FillConfig(spread_bps=D("10"), slippage_bps=D("10"), max_participation=D("0.1"))


def tick(price: str, bar_volume: int = 8000) -> Tick:
    return Tick(START, D(price), 100, START, bar_volume)


def test_tick_path_is_deterministic_and_visits_open_high_low_close():
    a = tick_path(BAR, timedelta(minutes=15), seed=7, key="INFY", ticks_per_bar=8)
    b = tick_path(BAR, timedelta(minutes=15), seed=7, key="INFY", ticks_per_bar=8)
    assert a == b
    prices = [t.price for t in a]
    assert prices[0] == D("100") and prices[-1] == D("102")
    assert max(prices) == D("104") and min(prices) == D("98")
    assert all(D("98") <= p <= D("104") for p in prices)
    assert sum(t.volume for t in a) == 8000
    assert a[1].ts - a[0].ts == timedelta(minutes=15) / 8
    assert all(t.bar_volume == 8000 for t in a)


def test_tick_path_order_of_extremes_depends_on_seed():
    orders = set()
    for seed in range(20):
        prices = [t.price for t in tick_path(BAR, timedelta(minutes=15), seed=seed, key="X")]
        orders.add(prices.index(D("104")) < prices.index(D("98")))
    assert orders == {True, False}


def test_round_to_tick():
    assert round_to_tick(D("100.01"), D("0.05"), up=True) == D("100.05")
    assert round_to_tick(D("100.04"), D("0.05"), up=False) == D("100.00")
    assert round_to_tick(D("100.03"), D("0.05")) == D("100.05")


def test_market_buy_pays_half_spread_plus_slippage_rounded_up():
    # 100 x (5 + 10) bps = 0.15 -> 100.15 (on grid)
    assert quote_price(Side.BUY, D("100"), CFG, market=True) == D("100.15")
    fill = match(OrderTerms(Side.BUY, OrderType.MARKET, 10), tick("100"), CFG, resting=False)
    assert fill is not None and fill.price == D("100.15") and fill.quantity == 10
    # sells: 100 - 0.15 = 99.85
    fill = match(OrderTerms(Side.SELL, OrderType.MARKET, 10), tick("100"), CFG, resting=False)
    assert fill is not None and fill.price == D("99.85")


def test_market_protection_blocks_fills_beyond_the_limit():
    limit = protection_limit(Side.BUY, D("100"), D("0.1"))
    assert limit == D("100.10")
    order = OrderTerms(Side.BUY, OrderType.MARKET, 10, protection_price=limit)
    assert match(order, tick("100"), CFG, resting=False) is None  # would pay 100.15
    assert protection_limit(Side.SELL, D("100"), D("2")) == D("98.00")


def test_marketable_limit_fills_at_quote_resting_limit_at_limit():
    order = OrderTerms(Side.BUY, OrderType.LIMIT, 10, price=D("101"))
    fill = match(order, tick("100"), CFG, resting=False)
    assert fill is not None and fill.price == D("100.05")  # ask: 100 + 5 bps, rounded up
    resting = OrderTerms(Side.BUY, OrderType.LIMIT, 10, price=D("99"))
    assert match(resting, tick("99.5"), CFG, resting=True) is None
    fill = match(resting, tick("98.9"), CFG, resting=True)
    assert fill is not None and fill.price == D("99")
    sell = OrderTerms(Side.SELL, OrderType.LIMIT, 10, price=D("103"))
    assert match(sell, tick("102.9"), CFG, resting=True) is None
    fill = match(sell, tick("103.2"), CFG, resting=True)
    assert fill is not None and fill.price == D("103")


def test_stop_triggers():
    assert is_triggered(Side.BUY, D("101"), D("101"))
    assert not is_triggered(Side.BUY, D("101"), D("100.95"))
    assert is_triggered(Side.SELL, D("99"), D("98.5"))
    assert not is_triggered(Side.SELL, D("99"), D("99.05"))


def test_participation_caps_fills_per_bar():
    assert bar_capacity(8000, 0, CFG) == 800
    assert bar_capacity(8000, 800, CFG) == 0
    assert bar_capacity(0, 0, CFG) is None  # no volume in the data: no cap
    order = OrderTerms(Side.BUY, OrderType.MARKET, 1000)
    fill = match(order, tick("100"), CFG, resting=False)
    assert fill is not None and fill.quantity == 800
    rest = OrderTerms(Side.BUY, OrderType.MARKET, 200)
    assert match(rest, tick("100"), CFG, resting=True, filled_in_bar=800) is None
    fill = match(rest, tick("100"), CFG, resting=True, filled_in_bar=700)
    assert fill is not None and fill.quantity == 100


def test_limit_needs_price():
    with pytest.raises(ValueError, match="price"):
        match(OrderTerms(Side.BUY, OrderType.LIMIT, 1), tick("100"), CFG, resting=False)


def test_the_opening_tick_is_the_paths_first() -> None:
    from dalal_shared.fills import opening_tick

    for volume in (0, 7, 8, 12345):
        bar = Bar(START, D("100"), D("105"), D("95"), D("102"), volume)
        for n in (4, 8, 15):
            path = tick_path(bar, timedelta(minutes=15), seed=1, key="X", ticks_per_bar=n)
            assert opening_tick(bar, ticks_per_bar=n) == path[0]
