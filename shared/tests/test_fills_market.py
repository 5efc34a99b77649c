"""`match_market` (the backtester's first tick of a bar) is `match` of a MARKET order, and the
per-config terms and the whole-number volume cap give what the Decimal arithmetic gave."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import ROUND_FLOOR
from decimal import Decimal as D

from dalal_shared import fills

START = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)


def test_match_market_is_match_of_a_market_order():
    rng = random.Random(1)
    configs = [
        fills.FillConfig(),
        fills.FillConfig(spread_bps=D("3"), slippage_bps=D("0.5"), max_participation=D("0.25")),
        fills.FillConfig(max_participation=D("0.0333"), tick_size=D("0.01")),
    ]
    for _ in range(5000):
        config = rng.choice(configs)
        side = rng.choice([fills.Side.BUY, fills.Side.SELL])
        price = D(rng.randint(1, 400_000) * 5) / 100
        volume = rng.choice([0, -5, 1, 9, 10, 11, 99, 100, rng.randint(0, 10**7)])
        quantity = rng.choice([0, 1, 10, rng.randint(1, 10**6)])
        filled = rng.choice([0, 0, 1, rng.randint(0, 1000)])
        protection = rng.choice([None, price, price * D("1.001"), price * D("0.999")])
        tick = fills.Tick(START, price, volume // 8, START, volume)
        terms = fills.OrderTerms(
            side, fills.OrderType.MARKET, quantity, protection_price=protection
        )
        got = fills.match(terms, tick, config, resting=False, filled_in_bar=filled)
        fast = fills.match_market(side, quantity, price, volume, config, protection, filled)
        assert (None if got is None else (got.quantity, got.price)) == fast
        if fast is not None:
            assert str(fast[1]) == str(got.price)  # type: ignore[union-attr]


def test_the_volume_cap_in_whole_numbers_is_the_decimal_floor():
    rng = random.Random(2)
    for participation in (D("0.1"), D("0.25"), D("0.0333"), D("1"), D("0.123456789")):
        config = fills.FillConfig(max_participation=participation)
        for _ in range(2000):
            volume = rng.randint(1, 10**12)
            cap = int((D(volume) * participation).to_integral_value(ROUND_FLOOR))
            assert fills.bar_capacity(volume, 0, config) == max(cap, 1)
