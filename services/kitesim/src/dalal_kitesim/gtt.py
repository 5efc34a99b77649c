"""Kite's GTT (Good Till Triggered) triggers, as `/gtt/triggers` serves them.

A trigger watches one instrument's last traded price and, when it is crossed, places its LIMIT
order at the exchange (then it is `triggered`, with the order's id or the rejection under
`orders[i].result`). Two kinds, as on Kite:

* `single`: one trigger value and one order; it fires when the price reaches the value from
  the side the `last_price` given at creation was on;
* `two-leg` (OCO: a stop-loss and a target): trigger values `[lower, upper]` around the price
  and two orders; the price at or below `lower` places `orders[0]`, at or above `upper`
  `orders[1]`; one leg fires, the other is gone with it.

Kite's rules kept here: LIMIT orders only, CNC (kitesim models no NRML/F&O), trigger values on
the tick grid and at least 0.25% away from the last price, a two-leg's values on both sides of
it, 1 year validity, at most `MAX_ACTIVE` active triggers. Triggers live in kitesim's state file,
so they fire while Dalal is down and survive a kitesim restart. Plain domain code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from dalal_kitesim.errors import InputException, KiteError
from dalal_kitesim.exchange import Exchange, _num, kite_time
from dalal_shared.fills import Tick

TYPES = ("single", "two-leg")
STATUSES = ("active", "triggered", "disabled", "expired", "cancelled", "rejected", "deleted")
MAX_ACTIVE = 250
MIN_DISTANCE = Decimal("0.0025")  # a trigger at least 0.25% away from the last price
VALIDITY = timedelta(days=365)


@dataclass
class GttOrder:
    transaction_type: str
    quantity: int
    price: Decimal
    product: str
    order_type: str = "LIMIT"
    result: dict[str, Any] | None = None


@dataclass
class Gtt:
    id: int
    type: str
    exchange: str
    tradingsymbol: str
    instrument_token: int
    trigger_values: list[Decimal]
    last_price: Decimal
    orders: list[GttOrder]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    status: str = "active"
    user_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def leg_for(self, price: Decimal) -> int | None:
        """Which order the price fires (None: not crossed)."""
        if self.type == "two-leg":
            lower, upper = self.trigger_values
            if price <= lower:
                return 0
            return 1 if price >= upper else None
        (value,) = self.trigger_values
        if value >= self.last_price:
            return 0 if price >= value else None
        return 0 if price <= value else None

    def to_kite(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "parent_trigger": None,
            "type": self.type,
            "created_at": kite_time(self.created_at),
            "updated_at": kite_time(self.updated_at),
            "expires_at": kite_time(self.expires_at),
            "status": self.status,
            "condition": {
                "exchange": self.exchange,
                "last_price": _num(self.last_price),
                "tradingsymbol": self.tradingsymbol,
                "trigger_values": [_num(v) for v in self.trigger_values],
                "instrument_token": self.instrument_token,
            },
            "orders": [
                {
                    "exchange": self.exchange,
                    "tradingsymbol": self.tradingsymbol,
                    "product": o.product,
                    "order_type": o.order_type,
                    "transaction_type": o.transaction_type,
                    "quantity": o.quantity,
                    "price": _num(o.price),
                    "result": o.result,
                }
                for o in self.orders
            ],
            "meta": self.meta,
        }


def _json(params: dict[str, str], name: str) -> Any:
    raw = params.get(name)
    if not raw:
        raise InputException(f"Missing `{name}`.")
    try:
        return json.loads(raw)
    except ValueError:
        raise InputException(f"Invalid `{name}`: not JSON.") from None


def _decimal(value: Any, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InputException(f"Invalid `{name}`: {value!r}.") from None
    if not out.is_finite() or out <= 0:
        raise InputException(f"Invalid `{name}`: must be a positive number.")
    return out


class GttBook:
    """The account's GTT triggers; fires them on the replay's ticks."""

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self.triggers: dict[int, Gtt] = {}
        self.seq = 100000
        self.on_change = lambda: None  # a trigger changed (state.py saves it)
        exchange.clock.listeners.ticks.append(self.on_ticks)

    # -- the routes ---------------------------------------------------------------------------
    def get(self, trigger_id: int) -> Gtt:
        gtt = self.triggers.get(trigger_id)
        if gtt is None:
            raise InputException(f"Invalid trigger id {trigger_id}.")
        return gtt

    def place(self, params: dict[str, str]) -> Gtt:
        if sum(1 for g in self.triggers.values() if g.status == "active") >= MAX_ACTIVE:
            raise InputException(f"You can have at most {MAX_ACTIVE} active GTT triggers.")
        self.seq += 1
        now = self.exchange.now
        gtt = self._build(self.seq, params, created_at=now)
        self.triggers[gtt.id] = gtt
        self.on_change()
        return gtt

    def modify(self, trigger_id: int, params: dict[str, str]) -> Gtt:
        old = self.get(trigger_id)
        if old.status != "active":
            raise InputException(f"Trigger {trigger_id} is {old.status}; only active can change.")
        gtt = self._build(trigger_id, params, created_at=old.created_at)
        gtt.expires_at = old.expires_at
        self.triggers[trigger_id] = gtt
        self.on_change()
        return gtt

    def delete(self, trigger_id: int) -> Gtt:
        gtt = self.get(trigger_id)
        if gtt.status != "active":
            raise InputException(f"Trigger {trigger_id} is {gtt.status}; it cannot be deleted.")
        gtt.status = "deleted"
        gtt.updated_at = self.exchange.now
        self.on_change()
        return gtt

    def _build(self, trigger_id: int, params: dict[str, str], *, created_at: datetime) -> Gtt:
        kind = params.get("type") or ""
        if kind not in TYPES:
            raise InputException("Invalid `type`: single or two-leg.")
        condition = _json(params, "condition")
        orders = _json(params, "orders")
        if not isinstance(condition, dict) or not isinstance(orders, list):
            raise InputException("Invalid `condition` or `orders`.")
        exchange = str(condition.get("exchange") or "")
        symbol = str(condition.get("tradingsymbol") or "")
        inst = self.exchange.instruments.lookup(f"{exchange}:{symbol}")
        if inst is None or inst.is_index:
            raise InputException(f"Invalid instrument {exchange}:{symbol}.")
        values = condition.get("trigger_values")
        if not isinstance(values, list) or not values:
            raise InputException("Invalid `trigger_values`.")
        triggers = [_decimal(v, "trigger_values") for v in values]
        want = 1 if kind == "single" else 2
        if len(triggers) != want or len(orders) != want:
            raise InputException(
                f"A {kind} trigger takes {want} trigger value(s) and {want} order(s)."
            )
        ltp = self.exchange.last_price(inst.instrument_token)
        if ltp <= 0:
            raise InputException(f"No last price for {exchange}:{symbol} yet.")
        tick = inst.tick_size or Decimal("0.05")
        for v in triggers:
            if v % tick:
                raise InputException(f"Trigger value {v} is not a multiple of the tick {tick}.")
            if abs(v - ltp) / ltp < MIN_DISTANCE:
                raise InputException(
                    f"Trigger value {v} is too close to the last price {ltp}: keep it at "
                    "least 0.25% away."
                )
        if kind == "two-leg" and not (triggers[0] < ltp < triggers[1]):
            raise InputException(
                f"For a two-leg (OCO) trigger the last price {ltp} must lie between the "
                "lower (stop-loss) and the upper (target) trigger values."
            )
        legs: list[GttOrder] = []
        for order in orders:
            if not isinstance(order, dict):
                raise InputException("Invalid `orders`.")
            if (order.get("exchange"), order.get("tradingsymbol")) != (exchange, symbol):
                raise InputException("Each GTT order must be for the condition's instrument.")
            if order.get("order_type", "LIMIT") != "LIMIT":
                raise InputException("GTT orders must be LIMIT orders.")
            side = order.get("transaction_type")
            if side not in ("BUY", "SELL"):
                raise InputException("Invalid `transaction_type`: BUY or SELL.")
            if order.get("product", "CNC") != "CNC":
                raise InputException("GTT is available for CNC (delivery) orders only here.")
            try:
                quantity = int(order.get("quantity") or 0)
            except (TypeError, ValueError):
                quantity = 0
            if quantity <= 0:
                raise InputException("Invalid `quantity`: must be greater than 0.")
            price = _decimal(order.get("price"), "price")
            if price % tick:
                raise InputException(f"Order price {price} is not a multiple of the tick {tick}.")
            legs.append(GttOrder(side, quantity, price, "CNC"))
        given_last = condition.get("last_price")
        last = _decimal(given_last, "last_price") if given_last is not None else ltp
        now = self.exchange.now
        return Gtt(
            id=trigger_id,
            type=kind,
            exchange=inst.exchange,
            tradingsymbol=inst.tradingsymbol,
            instrument_token=inst.instrument_token,
            trigger_values=triggers,
            last_price=last,
            orders=legs,
            created_at=created_at,
            updated_at=now,
            expires_at=created_at + VALIDITY,
            user_id=self.exchange.config.user_id,
        )

    # -- the market ---------------------------------------------------------------------------
    def on_ticks(self, batch: list[tuple[int, Tick]]) -> None:
        watching: dict[int, list[Gtt]] = {}
        for gtt in self.triggers.values():
            if gtt.status == "active":
                watching.setdefault(gtt.instrument_token, []).append(gtt)
        if not watching:
            return
        for token, tick in batch:
            for gtt in watching.get(token, ()):
                if gtt.status != "active":
                    continue
                if tick.ts >= gtt.expires_at:
                    gtt.status, gtt.updated_at = "expired", tick.ts
                    self.on_change()
                    continue
                leg = gtt.leg_for(tick.price)
                if leg is not None:
                    self._fire(gtt, leg, tick)

    def _fire(self, gtt: Gtt, leg: int, tick: Tick) -> None:
        order = gtt.orders[leg]
        params = {
            "exchange": gtt.exchange,
            "tradingsymbol": gtt.tradingsymbol,
            "transaction_type": order.transaction_type,
            "quantity": str(order.quantity),
            "order_type": "LIMIT",
            "product": order.product,
            "price": str(order.price),
            "validity": "DAY",
        }
        try:
            placed = self.exchange.place("regular", params)
            outcome = {"status": "success", "order_id": placed.order_id, "rejection_reason": ""}
        except KiteError as exc:
            outcome = {"status": "failed", "order_id": "", "rejection_reason": str(exc)}
        order.result = {
            "account_id": gtt.user_id,
            "exchange": gtt.exchange,
            "tradingsymbol": gtt.tradingsymbol,
            "validity": "DAY",
            "product": order.product,
            "order_type": "LIMIT",
            "transaction_type": order.transaction_type,
            "quantity": order.quantity,
            "price": _num(order.price),
            "meta": json.dumps({"app_id": 1, "gtt": gtt.id}),
            "timestamp": kite_time(tick.ts),
            "triggered_at": _num(tick.price),
            "order_result": outcome,
        }
        gtt.status, gtt.updated_at = "triggered", tick.ts
        self.on_change()

    # -- state ----------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "triggers": [
                {
                    "id": g.id,
                    "type": g.type,
                    "exchange": g.exchange,
                    "tradingsymbol": g.tradingsymbol,
                    "instrument_token": g.instrument_token,
                    "trigger_values": [str(v) for v in g.trigger_values],
                    "last_price": str(g.last_price),
                    "orders": [
                        {
                            "transaction_type": o.transaction_type,
                            "quantity": o.quantity,
                            "price": str(o.price),
                            "product": o.product,
                            "result": o.result,
                        }
                        for o in g.orders
                    ],
                    "created_at": g.created_at.isoformat(),
                    "updated_at": g.updated_at.isoformat(),
                    "expires_at": g.expires_at.isoformat(),
                    "status": g.status,
                    "user_id": g.user_id,
                }
                for g in self.triggers.values()
            ],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.seq = int(data.get("seq", self.seq))
        self.triggers = {}
        for row in data.get("triggers", []):
            gtt = Gtt(
                id=int(row["id"]),
                type=row["type"],
                exchange=row["exchange"],
                tradingsymbol=row["tradingsymbol"],
                instrument_token=int(row["instrument_token"]),
                trigger_values=[Decimal(v) for v in row["trigger_values"]],
                last_price=Decimal(row["last_price"]),
                orders=[
                    GttOrder(
                        o["transaction_type"],
                        int(o["quantity"]),
                        Decimal(o["price"]),
                        o["product"],
                        result=o.get("result"),
                    )
                    for o in row["orders"]
                ],
                created_at=datetime.fromisoformat(row["created_at"]),
                updated_at=datetime.fromisoformat(row["updated_at"]),
                expires_at=datetime.fromisoformat(row["expires_at"]),
                status=row["status"],
                user_id=row.get("user_id", ""),
            )
            self.triggers[gtt.id] = gtt
