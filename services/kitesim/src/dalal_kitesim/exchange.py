"""The simulated broker and exchange: orders, matching, trades, positions, holdings, funds.

Plain Python driven by the market clock's events; no HTTP here. Orders move through Kite's
statuses (PUT ORDER REQ RECEIVED, VALIDATION PENDING, OPEN PENDING, OPEN / TRIGGER PENDING /
AMO REQ RECEIVED, then COMPLETE, CANCELLED or REJECTED) and every change is kept in the order's
history and announced to `on_update` (postbacks and ticker order updates). Fills come from
`dalal_shared.fills`, charges from `dalal_shared.charges`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from dalal_kitesim.clock import MarketClock
from dalal_kitesim.errors import InputException, OrderException
from dalal_kitesim.marketdata import Instrument, InstrumentStore
from dalal_shared.charges import (
    ChargesBreakdown,
    DayCharges,
    TradeFill,
    auto_square_off_charge,
)
from dalal_shared.charges import Side as ChargeSide
from dalal_shared.fills import (
    FillConfig,
    OrderTerms,
    OrderType,
    Side,
    Tick,
    is_triggered,
    match,
    protection_limit,
)
from dalal_shared.timeutil import IST

ZERO = Decimal(0)
PRODUCTS = ("CNC", "MIS")
VARIETIES = ("regular", "amo")
VALIDITIES = ("DAY", "IOC")
OPEN_STATUSES = ("OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED")
FINAL_STATUSES = ("COMPLETE", "CANCELLED", "REJECTED")  # an order never leaves these


def kite_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Decimal) -> float | int:
    f = float(value)
    return int(f) if f == int(f) else f


@dataclass
class Order:
    order_id: str
    variety: str
    exchange: str
    tradingsymbol: str
    instrument_token: int
    transaction_type: str
    order_type: str
    product: str
    validity: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    disclosed_quantity: int
    market_protection: Decimal
    tag: str | None
    placed_by: str
    order_timestamp: datetime
    status: str = "PUT ORDER REQ RECEIVED"
    status_message: str | None = None
    exchange_order_id: str | None = None
    exchange_timestamp: datetime | None = None
    exchange_update_timestamp: datetime | None = None
    filled_quantity: int = 0
    cancelled_quantity: int = 0
    fill_value: Decimal = ZERO
    modified: bool = False
    protection_price: Decimal | None = None
    triggered: bool = False
    seen_tick: bool = False
    bar_start: datetime | None = None
    filled_in_bar: int = 0
    square_off: bool = False
    # the wall-clock time (UTC) the order reached the book, for measuring the path to it; the
    # Kite times above are the simulated market's
    received_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pending_quantity(self) -> int:
        return self.quantity - self.filled_quantity - self.cancelled_quantity

    @property
    def average_price(self) -> Decimal:
        if self.filled_quantity == 0:
            return ZERO
        return (self.fill_value / self.filled_quantity).quantize(Decimal("0.01"))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_kite(self) -> dict[str, Any]:
        return {
            "placed_by": self.placed_by,
            "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id,
            "parent_order_id": None,
            "status": self.status,
            "status_message": self.status_message,
            "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.order_timestamp),
            "exchange_update_timestamp": kite_time(self.exchange_update_timestamp),
            "exchange_timestamp": kite_time(self.exchange_timestamp),
            "variety": self.variety,
            "modified": self.modified,
            "exchange": self.exchange,
            "tradingsymbol": self.tradingsymbol,
            "instrument_token": self.instrument_token,
            "order_type": self.order_type,
            "transaction_type": self.transaction_type,
            "validity": self.validity,
            "validity_ttl": 0,
            "product": self.product,
            "quantity": self.quantity,
            "disclosed_quantity": self.disclosed_quantity,
            "price": _num(self.price),
            "trigger_price": _num(self.trigger_price),
            "average_price": _num(self.average_price),
            "filled_quantity": self.filled_quantity,
            "pending_quantity": self.pending_quantity if self.is_open else 0,
            "cancelled_quantity": self.cancelled_quantity,
            "market_protection": _num(self.market_protection),
            "meta": {},
            "tag": self.tag,
            "tags": [self.tag] if self.tag else [],
            "guid": f"ks-{self.order_id}",
        }


@dataclass
class Trade:
    trade_id: str
    order: Order
    quantity: int
    price: Decimal
    ts: datetime

    def to_kite(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "order_id": self.order.order_id,
            "exchange": self.order.exchange,
            "tradingsymbol": self.order.tradingsymbol,
            "instrument_token": self.order.instrument_token,
            "product": self.order.product,
            "average_price": _num(self.price),
            "quantity": self.quantity,
            "exchange_order_id": self.order.exchange_order_id,
            "transaction_type": self.order.transaction_type,
            "fill_timestamp": kite_time(self.ts),
            "order_timestamp": self.ts.astimezone(IST).strftime("%H:%M:%S"),
            "exchange_timestamp": kite_time(self.ts),
        }


@dataclass
class Position:
    instrument: Instrument
    product: str
    buy_quantity: int = 0
    buy_value: Decimal = ZERO
    sell_quantity: int = 0
    sell_value: Decimal = ZERO

    @property
    def quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_price(self) -> Decimal:
        return self.buy_value / self.buy_quantity if self.buy_quantity else ZERO

    @property
    def sell_price(self) -> Decimal:
        return self.sell_value / self.sell_quantity if self.sell_quantity else ZERO

    @property
    def realised(self) -> Decimal:
        matched = min(self.buy_quantity, self.sell_quantity)
        return (self.sell_price - self.buy_price) * matched if matched else ZERO

    def to_kite(self, last_price: Decimal, close_price: Decimal) -> dict[str, Any]:
        q = self.quantity
        value = self.sell_value - self.buy_value
        pnl = value + q * last_price
        average = self.buy_price if q > 0 else self.sell_price if q < 0 else ZERO

        def r(v: Decimal | int) -> Any:
            return _num(Decimal(v).quantize(Decimal("0.01")))

        return {
            "tradingsymbol": self.instrument.tradingsymbol,
            "exchange": self.instrument.exchange,
            "instrument_token": self.instrument.instrument_token,
            "product": self.product,
            "quantity": q,
            "overnight_quantity": 0,
            "multiplier": 1,
            "average_price": r(average),
            "close_price": r(close_price),
            "last_price": r(last_price),
            "value": r(value),
            "pnl": r(pnl),
            "m2m": r(pnl),
            "unrealised": r(pnl - self.realised),
            "realised": r(self.realised),
            "buy_quantity": self.buy_quantity,
            "buy_price": r(self.buy_price),
            "buy_value": r(self.buy_value),
            "buy_m2m": r(self.buy_value),
            "sell_quantity": self.sell_quantity,
            "sell_price": r(self.sell_price),
            "sell_value": r(self.sell_value),
            "sell_m2m": r(self.sell_value),
            "day_buy_quantity": self.buy_quantity,
            "day_buy_price": r(self.buy_price),
            "day_buy_value": r(self.buy_value),
            "day_sell_quantity": self.sell_quantity,
            "day_sell_price": r(self.sell_price),
            "day_sell_value": r(self.sell_value),
        }


@dataclass
class Holding:
    instrument: Instrument
    quantity: int = 0
    t1_quantity: int = 0
    average_price: Decimal = ZERO
    opening_quantity: int = 0


@dataclass
class ExchangeConfig:
    user_id: str
    opening_balance: Decimal
    mis_margin_fraction: Decimal
    require_market_protection: bool
    default_market_protection_pct: Decimal
    fill: FillConfig
    circuit_band_pct: Decimal = Decimal("20")  # NSE price band around the previous close


OrderListener = Callable[[dict[str, Any]], None]


class Exchange:
    """One simulated account at one simulated exchange."""

    def __init__(self, clock: MarketClock, instruments: InstrumentStore, config: ExchangeConfig):
        self.clock = clock
        self.instruments = instruments
        self.config = config
        self.listeners: list[OrderListener] = []
        self.on_change: Callable[[], None] = lambda: None  # any order changed (state.py)
        self.orders = {}
        self.trades: list[Trade] = []
        self.positions: dict[tuple[int, str], Position] = {}
        self.holdings: dict[int, Holding] = {}
        self.opening_balance = config.opening_balance
        self.charges_today = ChargesBreakdown()
        self.day_charges = DayCharges()  # per scrip and day: CNC nets intraday (charges.py)
        self.reject_next = 0
        self.reject_message = "RMS: rejected by kitesim fault injection"
        self._order_seq = 0
        self._exchange_seq = 0
        self._trade_seq = 0
        clock.listeners.ticks.append(self.on_ticks)
        clock.listeners.session_open.append(self.on_session_open)
        clock.listeners.square_off.append(self.on_square_off)
        clock.listeners.session_close.append(self.on_session_close)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.clock.now

    @property
    def orders(self) -> dict[str, Order]:
        """The day's orders by id, in placement order (what Kite's order book lists)."""
        return self._orders

    @orders.setter
    def orders(self, orders: dict[str, Order]) -> None:
        self._orders = orders
        self._live = {i: o for i, o in orders.items() if o.status not in FINAL_STATUSES}

    def live_orders(self) -> list[Order]:
        """The day's orders not final yet (open, or on their way there), in placement order:
        what the tick matching, the funds' blocks and the square-off look at. Kept by
        `_record` (the one place a status changes), so a day of thousands of finished orders
        costs a tick or an order admission nothing."""
        return list(self._live.values())

    def _record(self, order: Order, status: str, message: str | None = None) -> None:
        order.status = status
        if status in FINAL_STATUSES:
            self._live.pop(order.order_id, None)
        elif order.order_id not in self._live:  # at placement: placement order is kept
            self._live[order.order_id] = order
        if message is not None:
            order.status_message = message
        order.exchange_update_timestamp = self.now if order.exchange_order_id else None
        order.history.append(order.to_kite())
        self.on_change()

    def _announce(self, order: Order, *, update: bool = False) -> None:
        """Push an order change as Kite does (postback, ticker): a rejection, a cancellation,
        a completion, and `UPDATE` for a partial fill or a modification. Kite pushes nothing
        for an order that was merely accepted (OPEN, TRIGGER PENDING, AMO REQ RECEIVED)."""
        payload = order.to_kite()
        if update:
            payload["status"] = "UPDATE"
        for listener in self.listeners:
            listener(payload)

    def circuit_limits(self, token: int) -> tuple[Decimal, Decimal] | None:
        """The day's price band: `circuit_band_pct` around the previous close (the last price
        before any close is known); None for an index or an instrument without prices."""
        inst = self.instruments.get(token)
        state = self.clock.state(token)
        if inst is None or inst.is_index or state is None or self.config.circuit_band_pct <= 0:
            return None
        reference = state.prev_close or state.last_price
        if reference <= 0:
            return None
        tick = inst.tick_size or Decimal("0.05")
        band = reference * self.config.circuit_band_pct / 100
        lower = ((reference - band) / tick).to_integral_value(ROUND_CEILING) * tick
        upper = ((reference + band) / tick).to_integral_value(ROUND_FLOOR) * tick
        return lower.quantize(Decimal("0.01")), upper.quantize(Decimal("0.01"))

    def circuit_reason(self, token: int, price: Decimal, trigger: Decimal) -> str | None:
        """Kite's message for a price or trigger outside the day's band, else None."""
        limits = self.circuit_limits(token)
        if limits is None:
            return None
        lower, upper = limits
        for value in (v for v in (price, trigger) if v > 0):
            if value > upper:
                return (
                    f"Your order price is higher than the current upper circuit limit of "
                    f"{upper}. Place an order within the daily range."
                )
            if value < lower:
                return (
                    f"Your order price is lower than the current lower circuit limit of "
                    f"{lower}. Place an order within the daily range."
                )
        return None

    def _next_order_id(self) -> str:
        self._order_seq += 1
        return self.now.astimezone(IST).strftime("%y%m%d") + f"{self._order_seq:09d}"

    def _next_exchange_id(self) -> str:
        self._exchange_seq += 1
        return f"{1_000_000_000_000_000 + self._exchange_seq}"

    def last_price(self, token: int) -> Decimal:
        state = self.clock.state(token)
        return state.last_price if state else ZERO

    def get_order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise OrderException(f"Couldn't find that `order_id` ({order_id}).", status_code=404)
        return order

    # -- validation ---------------------------------------------------------------------------
    @staticmethod
    def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InputException(f"Invalid `{name}`: {raw!r} is not a number.") from None
        if not value.is_finite():
            raise InputException(f"Invalid `{name}`.")
        return value

    @staticmethod
    def _int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            if required:
                raise InputException(f"Missing or empty field `{name}`.")
            return None
        try:
            return int(raw)
        except ValueError:
            raise InputException(f"Invalid `{name}`: {raw!r} is not an integer.") from None

    @staticmethod
    def _choice(params: Mapping[str, str], name: str, options: tuple[str, ...]) -> str:
        value = params.get(name)
        if not value:
            raise InputException(f"Missing or empty field `{name}`.")
        if value not in options:
            raise InputException(f"Invalid `{name}`: {value!r}; expected one of {list(options)}.")
        return value

    def _check_tick(self, inst: Instrument, name: str, value: Decimal) -> None:
        tick = inst.tick_size or Decimal("0.05")
        if value <= 0:
            raise InputException(f"Invalid `{name}`: must be greater than 0.")
        if (value / tick) % 1 != 0:
            raise InputException(
                f"Tick size for this script is {tick}. Kindly enter `{name}` "
                "in the multiple of tick size for this script."
            )

    @staticmethod
    def _check_disclosed(disclosed: int, quantity: int) -> None:
        if disclosed < 0 or disclosed > quantity:
            raise InputException(
                "Invalid `disclosed_quantity`: it should be less than or equal to the quantity."
            )
        if disclosed and disclosed * 10 < quantity:
            raise InputException(
                "Invalid `disclosed_quantity`: it should be at least 10% of the quantity."
            )

    # -- placing ------------------------------------------------------------------------------
    def place(self, variety: str, params: Mapping[str, str], *, system: bool = False) -> Order:
        if variety not in VARIETIES:
            raise InputException(f"Invalid variety {variety!r}: kitesim supports regular and amo.")
        exchange = params.get("exchange") or ""
        symbol = params.get("tradingsymbol") or ""
        if not exchange or not symbol:
            raise InputException("Missing or empty field `exchange` or `tradingsymbol`.")
        inst = self.instruments.lookup(f"{exchange}:{symbol}")
        if inst is None:
            raise InputException(f"Invalid instrument {exchange}:{symbol}.")
        if inst.is_index:
            raise InputException(f"{exchange}:{symbol} is an index and cannot be traded.")
        side = self._choice(params, "transaction_type", ("BUY", "SELL"))
        order_type = self._choice(params, "order_type", ("MARKET", "LIMIT", "SL", "SL-M"))
        product = self._choice(params, "product", PRODUCTS)
        validity = params.get("validity") or "DAY"
        if validity not in VALIDITIES:
            raise InputException(f"Invalid `validity`: {validity!r}; kitesim supports DAY, IOC.")
        quantity = self._int(params, "quantity", required=True)
        assert quantity is not None
        if quantity <= 0:
            raise InputException("Invalid `quantity`: must be greater than 0.")
        lot = max(inst.lot_size, 1)
        if quantity % lot:
            raise InputException(f"Quantity should be a multiple of lot size ({lot}).")
        price = self._decimal(params, "price") or ZERO
        trigger = self._decimal(params, "trigger_price") or ZERO
        if order_type in ("LIMIT", "SL"):
            if price <= 0:
                raise InputException("Missing or invalid `price` for a LIMIT / SL order.")
            self._check_tick(inst, "price", price)
        elif price:
            price = ZERO  # Kite ignores a price on MARKET / SL-M
        if order_type in ("SL", "SL-M"):
            if trigger <= 0:
                raise InputException("Missing or invalid `trigger_price` for an SL / SL-M order.")
            self._check_tick(inst, "trigger_price", trigger)
            if order_type == "SL":
                wrong = trigger > price if side == "BUY" else trigger < price
                if wrong:
                    raise InputException(
                        "Trigger price for stoploss buy orders should be less than the "
                        "price; for sell orders more than the price."
                    )
        protection = self._decimal(params, "market_protection") or ZERO
        if order_type in ("MARKET", "SL-M"):
            if protection == 0 and self.config.require_market_protection:
                raise InputException(
                    "Market orders need `market_protection` (-1 for automatic, "
                    "or a percentage above 0 up to 100)."
                )
            if protection == -1:
                protection = self.config.default_market_protection_pct
            elif protection < 0 or protection > 100:
                raise InputException(
                    "Invalid `market_protection`: -1 or a percentage above 0 up to 100."
                )
        tag = params.get("tag") or None
        if tag is not None and len(tag) > 20:
            raise InputException("Invalid `tag`: at most 20 characters.")
        disclosed = self._int(params, "disclosed_quantity") or 0
        self._check_disclosed(disclosed, quantity)
        in_session = self.clock.in_session
        if variety == "regular" and not in_session:
            raise InputException(
                "Markets are closed right now. Use GTT for placing long standing orders instead."
            )
        if variety == "amo" and in_session:
            raise InputException("AMO orders can only be placed outside market hours.")
        if variety == "amo" and validity == "IOC":
            raise InputException("IOC orders cannot be placed as AMO.")

        order = Order(
            order_id=self._next_order_id(),
            variety=variety,
            exchange=inst.exchange,
            tradingsymbol=inst.tradingsymbol,
            instrument_token=inst.instrument_token,
            transaction_type=side,
            order_type=order_type,
            product=product,
            validity=validity,
            quantity=quantity,
            price=price,
            trigger_price=trigger,
            disclosed_quantity=disclosed,
            market_protection=protection,
            tag=tag,
            placed_by=self.config.user_id,
            order_timestamp=self.now,
        )
        order.square_off = system
        order.received_at = datetime.now(UTC)
        self.orders[order.order_id] = order
        self._record(order, "PUT ORDER REQ RECEIVED")
        self._record(order, "VALIDATION PENDING")
        if variety == "amo":
            self._record(order, "AMO REQ RECEIVED")  # accepted: Kite pushes nothing
            return order
        self._admit(order)
        return order

    def _admit(self, order: Order) -> None:
        """RMS checks, then to the exchange (OPEN / TRIGGER PENDING) or REJECTED."""
        reason = self._rms_reason(order)
        if reason is not None:
            self._record(order, "REJECTED", reason)
            self._announce(order)
            return
        self._record(order, "OPEN PENDING")
        order.exchange_order_id = self._next_exchange_id()
        order.exchange_timestamp = self.now
        if order.order_type in ("MARKET", "SL-M") and order.market_protection > 0:
            reference = self.last_price(order.instrument_token)
            if order.order_type == "SL-M":
                reference = order.trigger_price
            order.protection_price = protection_limit(
                order.transaction_type,
                reference,
                order.market_protection,
                self.config.fill.tick_size,
            )
        status = "TRIGGER PENDING" if order.order_type in ("SL", "SL-M") else "OPEN"
        self._record(order, status)  # accepted: Kite pushes nothing

    def _rms_reason(self, order: Order) -> str | None:
        if order.square_off:
            return None
        if self.reject_next > 0:
            self.reject_next -= 1
            return self.reject_message
        if order.product == "MIS" and self.clock.after_square_off:
            return "MIS orders are blocked after the intraday square-off time (15:20)."
        if self.last_price(order.instrument_token) <= 0:
            # no bars of it anywhere: it would never trade, so it is refused, not left OPEN
            return (
                f"kitesim has no prices for {order.exchange}:{order.tradingsymbol}: "
                "add its bars to DALAL_KITESIM_DATA_DIR (see docs/kitesim.md)."
            )
        circuit = self.circuit_reason(order.instrument_token, order.price, order.trigger_price)
        if circuit is not None:
            return circuit
        if order.transaction_type == "SELL" and order.product == "CNC":
            if order.quantity > self.sellable_quantity(order.instrument_token, exclude=order):
                return "Insufficient holdings: you can sell only the shares you hold (CNC)."
            return None
        required = self.order_margin(order)
        available = self.funds()["net"]
        if required > available:
            return (
                f"Insufficient funds. Required margin is {required:.2f} "
                f"but available margin is {available:.2f}."
            )
        return None

    def price_estimate(self, order: Order) -> Decimal:
        if order.order_type in ("LIMIT", "SL"):
            return order.price
        if order.order_type == "SL-M":
            return order.trigger_price
        return self.last_price(order.instrument_token)

    def order_margin(self, order: Order) -> Decimal:
        value = self.price_estimate(order) * order.pending_quantity
        if order.product == "MIS":
            position = self.positions.get((order.instrument_token, "MIS"))
            if position is not None:
                reduces = (
                    position.quantity < 0
                    if order.transaction_type == "BUY"
                    else (position.quantity > 0)
                )
                if reduces and order.pending_quantity <= abs(position.quantity):
                    return ZERO
            return value * self.config.mis_margin_fraction
        return value if order.transaction_type == "BUY" else ZERO

    def sellable_quantity(self, token: int, *, exclude: Order | None = None) -> int:
        holding = self.holdings.get(token)
        held = (holding.quantity + holding.t1_quantity) if holding else 0
        position = self.positions.get((token, "CNC"))
        net = position.quantity if position else 0
        pending = sum(
            o.pending_quantity
            for o in self._live.values()
            if o is not exclude
            and o.is_open
            and o.instrument_token == token
            and o.product == "CNC"
            and o.transaction_type == "SELL"
        )
        return held + net - pending

    # -- modify / cancel ----------------------------------------------------------------------
    def modify(self, variety: str, order_id: str, params: Mapping[str, str]) -> Order:
        order = self.get_order(order_id)
        if order.variety != variety:
            raise InputException(f"Order {order_id} is a {order.variety} order, not {variety}.")
        if not order.is_open:
            raise OrderException(f"Order cannot be modified as it is {order.status}.")
        inst = self.instruments.get(order.instrument_token)
        assert inst is not None
        quantity = self._int(params, "quantity")
        price = self._decimal(params, "price")
        trigger = self._decimal(params, "trigger_price")
        order_type = params.get("order_type") or order.order_type
        if order_type not in ("MARKET", "LIMIT", "SL", "SL-M"):
            raise InputException(f"Invalid `order_type`: {order_type!r}.")
        if quantity is not None and quantity <= order.filled_quantity:
            raise InputException("Invalid `quantity`: must exceed the filled quantity.")
        if price is not None and order_type in ("LIMIT", "SL"):
            self._check_tick(inst, "price", price)
        if trigger is not None and order_type in ("SL", "SL-M"):
            self._check_tick(inst, "trigger_price", trigger)
        validity = params.get("validity") or order.validity
        if validity not in VALIDITIES:
            raise InputException(f"Invalid `validity`: {validity!r}.")
        if order_type in ("LIMIT", "SL") and (price if price is not None else order.price) <= 0:
            raise InputException(f"Invalid `price`: a {order_type} order needs a price above 0.")
        if order_type in ("SL", "SL-M") and (
            (trigger if trigger is not None else order.trigger_price) <= 0
        ):
            raise InputException(f"Invalid `trigger_price`: an {order_type} order needs one.")
        if params.get("disclosed_quantity") not in (None, ""):
            disclosed = self._int(params, "disclosed_quantity") or 0
        else:
            disclosed = order.disclosed_quantity
        self._check_disclosed(disclosed, order.quantity if quantity is None else quantity)
        protection = self._decimal(params, "market_protection")
        if order_type in ("MARKET", "SL-M"):
            if protection is None and order.order_type != order_type:
                protection = ZERO  # a change to MARKET / SL-M names its own protection
            if protection is not None:
                if protection == 0 and self.config.require_market_protection:
                    raise InputException(
                        "Market orders need `market_protection` (-1 for automatic, "
                        "or a percentage above 0 up to 100)."
                    )
                if protection == -1:
                    protection = self.config.default_market_protection_pct
                elif protection < 0 or protection > 100:
                    raise InputException(
                        "Invalid `market_protection`: -1 or a percentage above 0 up to 100."
                    )
        new_price = price if price is not None else order.price
        new_trigger = trigger if trigger is not None else order.trigger_price
        circuit = self.circuit_reason(
            order.instrument_token,
            new_price if order_type in ("LIMIT", "SL") else ZERO,
            new_trigger if order_type in ("SL", "SL-M") else ZERO,
        )
        if circuit is not None and not order.square_off:
            raise OrderException(circuit)
        self._recheck_margin(order, order_type, quantity, price, trigger)
        if order.status != "AMO REQ RECEIVED":
            self._record(order, "MODIFY VALIDATION PENDING")
            self._record(order, "MODIFY PENDING")
        if quantity is not None:
            order.quantity = quantity
        if price is not None:
            order.price = price
        if trigger is not None:
            order.trigger_price = trigger
        if order_type in ("MARKET", "SL-M"):
            order.price = ZERO
            if protection is not None:
                order.market_protection = protection
            if order.market_protection > 0 and (order_type == "MARKET" or order.triggered):
                reference = self.last_price(order.instrument_token)
                order.protection_price = protection_limit(
                    order.transaction_type,
                    reference,
                    order.market_protection,
                    self.config.fill.tick_size,
                )
        else:
            order.protection_price = None
        order.disclosed_quantity = disclosed
        order.order_type = order_type
        order.validity = validity
        order.modified = True
        order.seen_tick = False
        if order.status == "AMO REQ RECEIVED":
            self._record(order, "AMO REQ RECEIVED")
        else:
            self._record(order, "MODIFIED")
            pending_trigger = order_type in ("SL", "SL-M") and not order.triggered
            self._record(order, "TRIGGER PENDING" if pending_trigger else "OPEN")
        self._announce(order, update=True)
        return order

    def _recheck_margin(
        self,
        order: Order,
        order_type: str,
        quantity: int | None,
        price: Decimal | None,
        trigger: Decimal | None,
    ) -> None:
        """RMS on a modification, as on a new order: the modified order must fit the funds (or
        the holdings, for a CNC sell) left once its current block is released; else the
        modification is refused and the order stays as it was."""
        if order.square_off:
            return
        trial = replace(
            order,
            order_type=order_type,
            quantity=order.quantity if quantity is None else quantity,
            price=ZERO if order_type in ("MARKET", "SL-M") else (price or order.price),
            trigger_price=order.trigger_price if trigger is None else trigger,
        )
        if order.transaction_type == "SELL" and order.product == "CNC":
            if trial.pending_quantity > self.sellable_quantity(
                order.instrument_token, exclude=order
            ):
                raise OrderException(
                    "Insufficient holdings: you can sell only the shares you hold (CNC)."
                )
            return
        required = self.order_margin(trial)
        available = self.funds()["net"] + self.order_margin(order)
        if required > available:
            raise OrderException(
                f"Insufficient funds. Required margin is {required:.2f} "
                f"but available margin is {available:.2f}."
            )

    def cancel(self, variety: str, order_id: str, *, message: str | None = None) -> Order:
        order = self.get_order(order_id)
        if order.variety != variety:
            raise InputException(f"Order {order_id} is a {order.variety} order, not {variety}.")
        if not order.is_open:
            raise OrderException(f"Order cannot be cancelled as it is {order.status}.")
        self._cancel(order, message)
        return order

    def _cancel(self, order: Order, message: str | None = None) -> None:
        order.cancelled_quantity += order.pending_quantity
        self._record(order, "CANCELLED", message)
        self._charge(order)
        self._announce(order)

    # -- matching -----------------------------------------------------------------------------
    def on_ticks(self, batch: list[tuple[int, Tick]]) -> None:
        by_token: dict[int, list[Order]] = {}
        for order in self._live.values():
            if order.status in ("OPEN", "TRIGGER PENDING"):
                by_token.setdefault(order.instrument_token, []).append(order)
        if not by_token:
            return
        for token, tick in batch:
            for order in by_token.get(token, ()):
                if order.is_open:
                    self._match(order, tick)

    def _match(self, order: Order, tick: Tick) -> None:
        side = Side(order.transaction_type)
        if order.status == "TRIGGER PENDING":
            if not is_triggered(side, order.trigger_price, tick.price):
                return
            order.triggered = True
            order.seen_tick = False
            if order.order_type == "SL-M" and order.market_protection > 0:
                order.protection_price = protection_limit(
                    side, tick.price, order.market_protection, self.config.fill.tick_size
                )
            self._record(order, "OPEN")
        if order.bar_start != tick.bar_start:
            order.bar_start = tick.bar_start
            order.filled_in_bar = 0
        effective = {
            "MARKET": OrderType.MARKET,
            "SL-M": OrderType.MARKET,
            "LIMIT": OrderType.LIMIT,
            "SL": OrderType.LIMIT,
        }[order.order_type]
        terms = OrderTerms(
            side=side,
            order_type=effective,
            quantity=order.pending_quantity,
            price=order.price if effective is OrderType.LIMIT else None,
            protection_price=order.protection_price,
        )
        fill = match(
            terms,
            tick,
            self.config.fill,
            resting=order.seen_tick,
            filled_in_bar=order.filled_in_bar,
        )
        order.seen_tick = True
        if fill is not None:
            order.filled_in_bar += fill.quantity
            self._fill(order, fill.quantity, fill.price, tick.ts)
        if order.is_open and order.validity == "IOC":
            self._cancel(order, "IOC order: the unfilled quantity was cancelled.")

    def _fill(self, order: Order, quantity: int, price: Decimal, ts: datetime) -> None:
        self._trade_seq += 1
        trade = Trade(f"{10_000_000 + self._trade_seq}", order, quantity, price, ts)
        self.trades.append(trade)
        order.filled_quantity += quantity
        order.fill_value += price * quantity
        order.exchange_timestamp = ts
        inst = self.instruments.get(order.instrument_token)
        assert inst is not None
        position = self.positions.setdefault(
            (order.instrument_token, order.product), Position(inst, order.product)
        )
        self.charges_today = self.charges_today + self.day_charges.add(
            inst.exchange,
            inst.tradingsymbol,
            order.product,
            ts.astimezone(IST).date(),
            TradeFill(order.order_id, ChargeSide(order.transaction_type), quantity, price),
        )
        if order.transaction_type == "BUY":
            position.buy_quantity += quantity
            position.buy_value += price * quantity
        else:
            position.sell_quantity += quantity
            position.sell_value += price * quantity
        if order.pending_quantity == 0:
            self._record(order, "COMPLETE")
            self._charge(order)
            self._announce(order)
        else:
            self._record(order, "OPEN")
            self._announce(order, update=True)  # a partial fill

    def _charge(self, order: Order) -> None:
        """The broker's square-off fee; the trade charges are booked per fill (`_fill`)."""
        if order.filled_quantity == 0:
            return
        day = self.now.astimezone(IST).date()
        if order.square_off:
            self.charges_today = self.charges_today + auto_square_off_charge(day)

    # -- session events -----------------------------------------------------------------------
    def on_session_open(self, _when: datetime) -> None:
        # as on Kite, yesterday's CNC positions move into holdings (as T1) only now, with the
        # positions' reset: between the close and the open they show as positions, not twice
        self._settle(self.now.astimezone(IST).date())
        amo = [o for o in self._live.values() if o.status == "AMO REQ RECEIVED"]
        # a new trading day: yesterday's book is gone
        self.orders = {o.order_id: o for o in amo}
        self.trades = []
        self.positions = {}
        self.charges_today = ChargesBreakdown()
        self.day_charges = DayCharges()
        for order in amo:
            order.order_timestamp = self.now
            self._admit(order)

    def on_square_off(self, _when: datetime) -> None:
        for order in self.live_orders():
            if order.is_open and order.product == "MIS":
                self._cancel(order, "Cancelled by the intraday square-off (15:20).")
        for (token, product), position in list(self.positions.items()):
            if product != "MIS" or position.quantity == 0:
                continue
            params = {
                "exchange": position.instrument.exchange,
                "tradingsymbol": position.instrument.tradingsymbol,
                "transaction_type": "SELL" if position.quantity > 0 else "BUY",
                "quantity": str(abs(position.quantity)),
                "product": "MIS",
                "order_type": "MARKET",
                "market_protection": "100",
                "tag": "squareoff",
            }
            order = self.place("regular", params, system=True)
            order.protection_price = None
            del token

    def on_session_close(self, _when: datetime) -> None:
        # MIS still open (no tick after 15:20): close at the last price.
        for order in self.live_orders():
            if order.is_open and order.square_off and order.status == "OPEN":
                last = self.last_price(order.instrument_token)
                self._fill(order, order.pending_quantity, last, self.now)
        for order in self.live_orders():
            if order.status in ("OPEN", "TRIGGER PENDING"):
                self._cancel(order, "Order cancelled at the end of the trading session.")

    def _settle(self, day: date) -> None:
        """At the next open: T1 settles, the last day's CNC buys become T1 holdings, cash rolls
        over."""
        for holding in self.holdings.values():
            holding.quantity += holding.t1_quantity
            holding.t1_quantity = 0
        funds = self.funds()
        for (token, product), position in self.positions.items():
            if product != "CNC" or position.quantity == 0:
                continue
            holding = self.holdings.setdefault(token, Holding(position.instrument))
            if position.quantity > 0:
                total = holding.quantity + holding.t1_quantity + position.quantity
                holding.average_price = (
                    holding.average_price * (holding.quantity + holding.t1_quantity)
                    + position.buy_price * position.quantity
                ) / total
                holding.t1_quantity += position.quantity
            else:
                holding.quantity += position.quantity  # a sale out of the demat account
        for token in [t for t, h in self.holdings.items() if h.quantity + h.t1_quantity <= 0]:
            del self.holdings[token]
        for holding in self.holdings.values():
            holding.opening_quantity = holding.quantity + holding.t1_quantity
        self.opening_balance = Decimal(str(funds["cash_after_day"]))
        del day

    # -- views --------------------------------------------------------------------------------
    def funds(self) -> dict[str, Decimal]:
        cnc_flow = ZERO
        mis_realised = ZERO
        mis_margin = ZERO
        for (token, product), p in self.positions.items():
            if product == "CNC":
                cnc_flow += p.sell_value - p.buy_value
            else:
                mis_realised += p.realised
                if p.quantity:
                    avg = p.buy_price if p.quantity > 0 else p.sell_price
                    mis_margin += abs(p.quantity) * avg * self.config.mis_margin_fraction
            del token
        blocks = sum((self.order_margin(o) for o in self._live.values() if o.is_open), start=ZERO)
        charges = self.charges_today.total
        cash_after_day = self.opening_balance + cnc_flow + mis_realised - charges
        debits = -cnc_flow + mis_margin + blocks + charges - mis_realised
        net = self.opening_balance - debits
        return {
            "net": net,
            "opening_balance": self.opening_balance,
            "debits": debits,
            "m2m_realised": mis_realised,
            "delivery": max(-cnc_flow, ZERO),
            "exposure": mis_margin + blocks,
            "cash_after_day": cash_after_day,
        }

    def margins_kite(self) -> dict[str, Any]:
        f = self.funds()

        def r(value: Decimal) -> float:
            return float(value.quantize(Decimal("0.01")))

        equity = {
            "enabled": True,
            "net": r(f["net"]),
            "available": {
                "adhoc_margin": 0,
                "cash": r(f["opening_balance"]),
                "opening_balance": r(f["opening_balance"]),
                "live_balance": r(f["net"]),
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": {
                "debits": r(f["debits"]),
                "exposure": r(f["exposure"]),
                "m2m_realised": r(f["m2m_realised"]),
                "m2m_unrealised": 0,
                "option_premium": 0,
                "payout": 0,
                "span": 0,
                "holding_sales": 0,
                "turnover": 0,
                "liquid_collateral": 0,
                "stock_collateral": 0,
                "delivery": r(f["delivery"]),
            },
        }
        commodity: dict[str, Any] = copy.deepcopy(equity)
        commodity["enabled"] = False
        commodity["net"] = 0
        for section in ("available", "utilised"):
            for key in commodity[section]:
                commodity[section][key] = 0
        return {"equity": equity, "commodity": commodity}

    def positions_kite(self) -> dict[str, list[dict[str, Any]]]:
        rows = []
        for (token, _product), p in self.positions.items():
            state = self.clock.state(token)
            last = state.last_price if state else ZERO
            close = state.prev_close if state else ZERO
            rows.append(p.to_kite(last, close))
        return {"net": rows, "day": copy.deepcopy(rows)}

    def holdings_kite(self) -> list[dict[str, Any]]:
        out = []
        for token, h in self.holdings.items():
            state = self.clock.state(token)
            last = state.last_price if state else ZERO
            close = state.prev_close if state else ZERO
            qty = h.quantity + h.t1_quantity
            used = sum(
                o.filled_quantity
                for o in self.orders.values()
                if o.instrument_token == token
                and o.product == "CNC"
                and o.transaction_type == "SELL"
            )
            change = last - close if close else ZERO
            out.append(
                {
                    "tradingsymbol": h.instrument.tradingsymbol,
                    "exchange": h.instrument.exchange,
                    "instrument_token": token,
                    "isin": "",
                    "product": "CNC",
                    "price": 0,
                    "quantity": h.quantity,
                    "used_quantity": used,
                    "t1_quantity": h.t1_quantity,
                    "realised_quantity": h.quantity,
                    "authorised_quantity": 0,
                    "authorised_date": kite_time(self.now),
                    "authorisation": {},
                    "opening_quantity": h.opening_quantity,
                    "short_quantity": 0,
                    "collateral_quantity": 0,
                    "collateral_type": "",
                    "discrepancy": False,
                    "average_price": _num(h.average_price.quantize(Decimal("0.01"))),
                    "last_price": _num(last),
                    "close_price": _num(close),
                    "pnl": _num(((last - h.average_price) * qty).quantize(Decimal("0.01"))),
                    "day_change": _num(change),
                    "day_change_percentage": float(change / close * 100) if close else 0.0,
                    "mtf": {
                        "quantity": 0,
                        "used_quantity": 0,
                        "average_price": 0,
                        "value": 0,
                        "initial_margin": 0,
                    },
                }
            )
        return out
