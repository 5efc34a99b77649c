"""The fill model shared by kitesim's matcher, paper trading and the backtester.

Bars become ticks along a deterministic, seeded path (open, then the high or the low first,
then the other extreme, then close), so a replay is the same every time for the same seed.
An order meets ticks one at a time:

* MARKET fills at the next tick: buys at the ask (tick + half the spread) plus slippage, sells
  at the bid minus slippage, never beyond its market-protection limit;
* LIMIT fills on the first tick after arrival at the better of (ask/bid, limit) when marketable,
  later at its limit price when a tick trades at or through it;
* SL / SL-M trigger when a tick trades at or through the trigger price, then behave as
  LIMIT / MARKET from that tick on;
* at most `max_participation` of a bar's volume fills for one order per bar; the rest waits for
  the next bars (a partial fill).

Prices are Decimal rupees rounded to the tick size (buys up, sells down: never in the
trader's favour).
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from dalal_shared.timeutil import ensure_aware

DEFAULT_TICK_SIZE = Decimal("0.05")
BPS = Decimal("0.0001")


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"  # stop-limit
    SL_M = "SL-M"  # stop-market


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar, prices in rupees, as the fill model walks it."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade of a bar's simulated path: when, at what price, how many shares."""

    ts: datetime
    price: Decimal
    volume: int  # shares traded at this tick
    bar_start: datetime
    bar_volume: int


@dataclass(frozen=True, slots=True)
class FillConfig:
    """How fills are simulated: spread, slippage, the share of a bar's volume an order may take."""

    spread_bps: Decimal = Decimal("2")  # full bid-ask spread around the traded price
    slippage_bps: Decimal = Decimal("1")  # extra cost of MARKET (and SL-M) orders
    max_participation: Decimal = Decimal("0.1")  # share of a bar's volume one order may take
    tick_size: Decimal = DEFAULT_TICK_SIZE


_ONE = Decimal(1)
_PAISA = Decimal("0.01")


def round_to_tick(price: Decimal, tick_size: Decimal, *, up: bool | None = None) -> Decimal:
    """`price` on the tick grid: up, down, or nearest (None)."""
    mode = ROUND_HALF_UP if up is None else (ROUND_CEILING if up else ROUND_FLOOR)
    steps = (price / tick_size).quantize(_ONE, rounding=mode)
    return (steps * tick_size).quantize(_PAISA)


def _rng(seed: int, key: str, bar_start: datetime) -> random.Random:
    digest = hashlib.sha256(f"{seed}|{key}|{bar_start.isoformat()}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def tick_path(
    bar: Bar,
    duration: timedelta,
    *,
    seed: int,
    key: str,
    ticks_per_bar: int = 8,
    tick_size: Decimal = DEFAULT_TICK_SIZE,
) -> list[Tick]:
    """The bar's ticks: open -> first extreme -> second extreme -> close, evenly spaced in time.

    Which extreme comes first is drawn from (seed, key, bar start), so the path is the same on
    every run. Intermediate ticks are linear between the four anchors, on the tick grid. Volume is
    spread evenly (the remainder on the last tick).
    """
    ensure_aware(bar.start)
    n = max(4, ticks_per_bar)
    high_first = _rng(seed, key, bar.start).random() < 0.5
    first, second = (bar.high, bar.low) if high_first else (bar.low, bar.high)
    anchors = [bar.open, first, second, bar.close]
    # anchor positions on [0, n-1]: 0, ~1/3, ~2/3, n-1
    positions = [0, (n - 1) // 3, (2 * (n - 1)) // 3, n - 1]
    if positions[1] == positions[0]:
        positions[1] = 1
    if positions[2] <= positions[1]:
        positions[2] = positions[1] + 1
    prices: list[Decimal] = []
    for i in range(n):
        seg = 0
        while seg < 2 and i > positions[seg + 1]:
            seg += 1
        a, b = positions[seg], positions[seg + 1]
        frac = Decimal(i - a) / Decimal(b - a)
        raw = anchors[seg] + (anchors[seg + 1] - anchors[seg]) * frac
        price = round_to_tick(raw, tick_size)
        prices.append(min(max(price, bar.low), bar.high))
    prices[0], prices[-1] = bar.open, bar.close
    base, rest = divmod(bar.volume, n)
    step = duration / n
    return [
        Tick(
            ts=bar.start + step * i,
            price=prices[i],
            volume=base + (rest if i == n - 1 else 0),
            bar_start=bar.start,
            bar_volume=bar.volume,
        )
        for i in range(n)
    ]


def opening_tick(bar: Bar, *, ticks_per_bar: int = 8) -> Tick:
    """`tick_path(bar, ...)[0]` without building the rest of the path: a MARKET order that
    fills at the bar's first tick needs nothing more."""
    return opening_tick_at(bar.start, bar.open, bar.volume, ticks_per_bar=ticks_per_bar)


def opening_tick_at(
    start: datetime, open_: Decimal, volume: int, *, ticks_per_bar: int = 8
) -> Tick:
    """`opening_tick` of the bar that starts at `start`, opens at `open_` and trades `volume`,
    from just those (its high, low and close are not needed for the first tick)."""
    ensure_aware(start)
    n = max(4, ticks_per_bar)
    return Tick(ts=start, price=open_, volume=volume // n, bar_start=start, bar_volume=volume)


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What the fill model needs of an order."""

    side: Side
    order_type: OrderType
    quantity: int  # still pending
    price: Decimal | None = None  # limit price (LIMIT, SL)
    trigger_price: Decimal | None = None  # SL, SL-M
    protection_price: Decimal | None = None  # worst price a MARKET / SL-M order may fill at


@dataclass(frozen=True, slots=True)
class Fill:
    """What an order got from one tick: shares and price."""

    quantity: int
    price: Decimal


def protection_limit(
    side: Side | str, reference: Decimal, percent: Decimal, tick_size: Decimal = DEFAULT_TICK_SIZE
) -> Decimal:
    """The worst fill price of a MARKET order with `percent` market protection."""
    side = Side(side)
    factor = Decimal(1) + percent / 100 if side is Side.BUY else Decimal(1) - percent / 100
    return round_to_tick(reference * factor, tick_size, up=side is Side.SELL)


def is_triggered(side: Side | str, trigger_price: Decimal, tick_price: Decimal) -> bool:
    """A stop order triggers when the market trades at or through its trigger price."""
    if Side(side) is Side.BUY:
        return tick_price >= trigger_price
    return tick_price <= trigger_price


class _Terms:
    """What a `FillConfig` works out to, worked out once per config (a backtest asks per fill):
    the cost of a marketable order in bps of the price (half the spread, plus the slippage for
    MARKET), and the participation cap as a ratio of whole numbers."""

    __slots__ = ("config", "limit_cost", "market_cost", "participation")

    def __init__(self, config: FillConfig):
        self.config = config
        self.limit_cost = config.spread_bps / 2 + Decimal(0)
        self.market_cost = config.spread_bps / 2 + config.slippage_bps
        participation = config.max_participation
        # floor(volume x participation) in whole numbers when the product is exact in Decimal
        # (a finite, short ratio); None: the Decimal product, as ever
        self.participation = (
            participation.as_integer_ratio()
            if participation.is_finite() and len(participation.as_tuple().digits) <= 9
            else None
        )


_TERMS: dict[int, _Terms] = {}  # by id() of the config, checked against the config itself


def _terms(config: FillConfig) -> _Terms:
    terms = _TERMS.get(id(config))
    if terms is None or terms.config is not config:
        if len(_TERMS) > 256:  # configs come and go in tests: keep the memo small
            _TERMS.clear()
        terms = _TERMS[id(config)] = _Terms(config)
    return terms


def quote_price(side: Side, tick_price: Decimal, config: FillConfig, *, market: bool) -> Decimal:
    """What a marketable order of `side` pays at this tick (ask for buys, bid for sells)."""
    terms = _terms(config)
    delta = tick_price * (terms.market_cost if market else terms.limit_cost) * BPS
    if side is Side.BUY:
        return round_to_tick(tick_price + delta, config.tick_size, up=True)
    return round_to_tick(tick_price - delta, config.tick_size, up=False)


def bar_capacity(bar_volume: int, filled_in_bar: int, config: FillConfig) -> int | None:
    """Shares one order may still take from this bar (None: no limit, the data has no volume)."""
    if bar_volume <= 0:
        return None
    ratio = _terms(config).participation
    if ratio is not None and type(bar_volume) is int and bar_volume < 10**18:
        cap = bar_volume * ratio[0] // ratio[1]  # floor of the exact product, as below
    else:
        cap = int((Decimal(bar_volume) * config.max_participation).to_integral_value(ROUND_FLOOR))
    return max(0, max(cap, 1) - filled_in_bar)


def match_market(
    side: Side,
    quantity: int,
    tick_price: Decimal,
    bar_volume: int,
    config: FillConfig,
    protection_price: Decimal | None = None,
    filled_in_bar: int = 0,
) -> tuple[int, Decimal] | None:
    """`match` of a MARKET (or triggered SL-M) order for `quantity` at a tick of `tick_price`
    in a bar that trades `bar_volume`, as (quantity, price): the backtester's first tick of a
    bar, without building the tick, the order's terms and the fill."""
    if quantity <= 0:
        return None
    capacity = bar_capacity(bar_volume, filled_in_bar, config)
    if capacity == 0:
        return None
    if capacity is not None and capacity < quantity:
        quantity = capacity
    price = quote_price(side, tick_price, config, market=True)
    if protection_price is not None:
        beyond = price > protection_price if side is Side.BUY else price < protection_price
        if beyond:
            return None
    return quantity, price


def match(
    order: OrderTerms,
    tick: Tick,
    config: FillConfig,
    *,
    resting: bool,
    filled_in_bar: int = 0,
) -> Fill | None:
    """The fill of `order` at `tick`, or None.

    `resting` is False on the first tick an order meets after it arrived (or after its stop
    triggered) and True afterwards. Stop orders must be triggered (see `is_triggered`) by the
    caller, which then passes them with order_type LIMIT (SL) or MARKET (SL-M).
    """
    side = order.side
    if order.order_type in (OrderType.MARKET, OrderType.SL_M):
        got = match_market(
            side,
            order.quantity,
            tick.price,
            tick.bar_volume,
            config,
            order.protection_price,
            filled_in_bar,
        )
        return None if got is None else Fill(*got)
    if order.quantity <= 0:
        return None
    capacity = bar_capacity(tick.bar_volume, filled_in_bar, config)
    if capacity == 0:
        return None
    quantity = order.quantity if capacity is None else min(order.quantity, capacity)
    if order.price is None:
        raise ValueError(f"{order.order_type} order needs a price")
    limit = order.price
    quoted = quote_price(side, tick.price, config, market=False)
    if side is Side.BUY:
        if not resting and quoted <= limit:
            return Fill(quantity, quoted)
        if resting and tick.price <= limit:
            return Fill(quantity, limit)
    else:
        if not resting and quoted >= limit:
            return Fill(quantity, quoted)
        if resting and tick.price >= limit:
            return Fill(quantity, limit)
    return None
