"""Reconciliation: the ledger's view against the broker's, listing every break.

Plain domain code comparing two views. The broker side comes through `BrokerViewSource`: the
process wires `HttpBrokerView` (the broker-gateway's GET /positions, /holdings and /trades;
GET /reconcile answers 503 `broker_unavailable` when the broker cannot be reached), and POST
/reconcile takes a broker view in its body.

Like with like (Kite's model, which kitesim follows):

* Quantity. Kite's holdings are the demat account as of the start of the trading day (settled
  `quantity` + `t1_quantity`, bought on an earlier day and not yet delivered); the day's trades
  are positions (`net`; for equities the same rows as `day`). A CNC buy shows as a position on
  its trade day and moves into holdings (as T1) at the next trading day, when the positions are
  reset, so the broker's CNC quantity of a symbol is holdings + today's net CNC position and
  nothing is counted twice. MIS/NRML quantities come from positions alone.
* Average price. A position row's `average_price` is Kite's *day* average: the day's buys
  (value / quantity) for a net long, the day's sells for a net short, whatever was sold in
  between. It is compared with the same figure from the ledger's fills of that key on that day
  (the IST day of the key's latest fill), not with the ledger's FIFO average of the open lots. A
  holding's average (no position row that day) is compared with the ledger's fills averaged the
  broker's ways (`ledger_holding_averages`): per-trade FIFO (Console), or the days' net lots
  (intraday buy-and-sell netted first) FIFO or weighted (kitesim: a sale keeps the average);
  the broker's figure must match one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dalal_portfolio.ledger import Fill, Position
from dalal_shared.clients import BrokerClient, ServiceError
from dalal_shared.errors import TemporaryError
from dalal_shared.messages import Exchange, Product, Side, Symbol
from dalal_shared.timeutil import to_ist

Money = Decimal
Key = tuple[str, str, str]


class BrokerPosition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Product
    quantity: int = Field(ge=-10_000_000, le=10_000_000)
    average_price: Decimal = Field(ge=0, max_digits=20, decimal_places=4)


class BrokerHolding(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    exchange: Exchange = "NSE"
    symbol: Symbol
    quantity: int = Field(ge=0, le=10_000_000)
    average_price: Decimal = Field(ge=0, max_digits=20, decimal_places=4)


class BrokerTrade(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    trade_id: str = Field(min_length=1, max_length=64)
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Product
    side: Side
    quantity: int = Field(gt=0, le=10_000_000)
    price: Decimal = Field(gt=0, max_digits=20, decimal_places=4)


class BrokerView(BaseModel):
    """What the broker says the account holds and traded (today)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    positions: list[BrokerPosition] = Field(default_factory=list, max_length=10_000)
    holdings: list[BrokerHolding] = Field(default_factory=list, max_length=10_000)
    trades: list[BrokerTrade] | None = Field(None, max_length=100_000)


BreakKind = Literal[
    "missing_at_broker",
    "missing_in_ledger",
    "quantity_mismatch",
    "average_price_mismatch",
    "trade_missing_in_ledger",
    "trade_missing_at_broker",
    "trade_mismatch",
]


@dataclass(frozen=True, slots=True)
class Break:
    kind: BreakKind
    exchange: str
    symbol: str
    product: str
    ledger: str | None
    broker: str | None
    trade_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    breaks: list[Break] = field(default_factory=list)
    positions_compared: int = 0
    trades_compared: int = 0

    @property
    def clean(self) -> bool:
        return not self.breaks


def reconcile(
    positions: Iterable[Position],
    fills: Iterable[Fill],
    view: BrokerView,
    *,
    price_tolerance_rupees: Decimal = Decimal("0.05"),
) -> Reconciliation:
    """Every difference between the ledger and `view` (trades only when the view has them)."""
    all_fills = list(fills)
    ledger: dict[Key, Position] = {p.key: p for p in positions if p.quantity != 0}
    broker_qty: dict[Key, int] = {}
    day_avg: dict[Key, Decimal] = {}  # a position row: Kite's day average
    holding_avg: dict[Key, Decimal] = {}
    for h in view.holdings:
        key: Key = (h.exchange, h.symbol, "CNC")
        broker_qty[key] = broker_qty.get(key, 0) + h.quantity
        holding_avg[key] = h.average_price
    for p in view.positions:
        key = (p.exchange, p.symbol, p.product)
        broker_qty[key] = broker_qty.get(key, 0) + p.quantity
        if p.quantity != 0 and p.product in ("CNC", "MIS"):  # equity rows hold the day only
            day_avg[key] = p.average_price
    broker_qty = {k: q for k, q in broker_qty.items() if q != 0}
    by_key: dict[Key, list[Fill]] = {}
    for f in all_fills:
        by_key.setdefault(f.key, []).append(f)
    breaks: list[Break] = []
    for key in sorted(set(ledger) | set(broker_qty)):
        pos = ledger.get(key)
        qty = broker_qty.get(key)
        if pos is None:
            breaks.append(Break("missing_in_ledger", *key, None, str(qty)))
            continue
        if qty is None:
            breaks.append(Break("missing_at_broker", *key, str(pos.quantity), None))
            continue
        if qty != pos.quantity:
            breaks.append(Break("quantity_mismatch", *key, str(pos.quantity), str(qty)))
            continue
        if key in day_avg:
            broker_avg, ledger_avg = day_avg[key], ledger_day_average(by_key.get(key, []))
        elif key in holding_avg:
            broker_avg = holding_avg[key]
            candidates = [pos.average_price, *ledger_holding_averages(by_key.get(key, []))]
            ledger_avg = min(candidates, key=lambda a: abs(a - broker_avg), default=None)
        else:  # an NRML row carries earlier days: each trade's price is compared instead
            continue
        if ledger_avg is None or abs(broker_avg - ledger_avg) > price_tolerance_rupees:
            breaks.append(
                Break("average_price_mismatch", *key,
                      None if ledger_avg is None else str(ledger_avg), str(broker_avg))
            )  # fmt: skip
    trades_compared = 0
    if view.trades is not None:
        mine = {f.trade_id: f for f in all_fills if f.charged}
        theirs = {t.trade_id: t for t in view.trades}
        trades_compared = len(theirs)
        for trade_id, t in sorted(theirs.items()):
            mine_f = mine.get(trade_id)
            key = (t.exchange, t.symbol, t.product)
            if mine_f is None:
                desc = f"{t.side} {t.quantity} @ {t.price}"
                breaks.append(Break("trade_missing_in_ledger", *key, None, desc, trade_id))
            elif (mine_f.symbol, mine_f.side, mine_f.quantity, mine_f.product) != (
                t.symbol, t.side, t.quantity, t.product
            ) or abs(mine_f.price - t.price) > price_tolerance_rupees:  # fmt: skip
                breaks.append(
                    Break(
                        "trade_mismatch", *key,
                        f"{mine_f.side} {mine_f.quantity} {mine_f.product} @ {mine_f.price}",
                        f"{t.side} {t.quantity} {t.product} @ {t.price}",
                        trade_id,
                    )
                )  # fmt: skip
        # the broker's trade book covers today only: compare our fills of the same days
        days = {f.filled_at.date() for f in mine.values() if f.trade_id in theirs}
        for trade_id, f in sorted(mine.items()):
            if trade_id not in theirs and f.filled_at.date() in days:
                breaks.append(
                    Break("trade_missing_at_broker", *f.key,
                          f"{f.side} {f.quantity} @ {f.price}", None, trade_id)
                )  # fmt: skip
    return Reconciliation(breaks, len(set(ledger) | set(broker_qty)), trades_compared)


def ledger_holding_averages(fills: Iterable[Fill]) -> list[Decimal]:
    """A holding's average price computed from the ledger the broker's ways: each IST day's
    trades net first (a day that buys and sells is partly intraday; what it adds is its net at
    the day's buy average, what it removes its net sale), then the days' net lots average FIFO
    and as a running weighted average (kitesim: a sale keeps the average). Both, in that order;
    empty when nothing is held. (Per-trade FIFO, Console's rule for delivery lots, is the
    ledger's own `Position.average_price`.)"""
    days: dict[object, list[Fill]] = {}
    for f in sorted(fills, key=Fill.sort_key):
        days.setdefault(to_ist(f.filled_at).date(), []).append(f)
    lots: list[list[Decimal]] = []  # [quantity, price], oldest first
    held, weighted = Decimal(0), Decimal(0)
    for day_fills in days.values():
        bought = sum(f.quantity for f in day_fills if f.side == "BUY")
        sold = sum(f.quantity for f in day_fills if f.side == "SELL")
        net = Decimal(bought - sold)
        if net > 0:
            value = sum((f.price * f.quantity for f in day_fills if f.side == "BUY"), Decimal(0))
            price = value / bought
            weighted = (weighted * held + price * net) / (held + net)
            held += net
            lots.append([net, price])
        elif net < 0:
            held += net
            remaining = -net
            while remaining > 0 and lots:
                take = min(remaining, lots[0][0])
                lots[0][0] -= take
                remaining -= take
                if lots[0][0] == 0:
                    lots.pop(0)
        if held <= 0:
            held, weighted, lots = Decimal(0), Decimal(0), []
    if held <= 0:
        return []
    fifo = sum((q * p for q, p in lots), Decimal(0)) / sum((q for q, _p in lots), Decimal(0))
    return [fifo.quantize(Decimal("0.0001")), weighted.quantize(Decimal("0.0001"))]


def ledger_day_average(fills: Iterable[Fill]) -> Decimal | None:
    """Kite's position `average_price` computed from the ledger: over the fills of the IST day
    of the latest fill, the buys' average for a net long, the sells' for a net short (None when
    that day nets to zero)."""
    ordered = sorted(fills, key=Fill.sort_key)
    if not ordered:
        return None
    day = to_ist(ordered[-1].filled_at).date()
    todays = [f for f in ordered if to_ist(f.filled_at).date() == day]
    net = sum(f.signed_quantity for f in todays)
    if net == 0:
        return None
    side = "BUY" if net > 0 else "SELL"
    legs = [f for f in todays if f.side == side]
    quantity = sum(f.quantity for f in legs)
    value = sum((f.price * f.quantity for f in legs), Decimal(0))
    return (value / quantity).quantize(Decimal("0.0001"))


class BrokerViewSource(Protocol):
    def fetch(self) -> BrokerView: ...


def view_from_kite(
    positions: dict[str, Any], holdings: list[dict[str, Any]], trades: list[dict[str, Any]] | None
) -> BrokerView:
    """A `BrokerView` from Kite's shapes: `net` positions, holdings (quantity + T+1) and the
    broker journal's trades."""
    return BrokerView(
        positions=[
            BrokerPosition(
                exchange=p.get("exchange", "NSE"),
                symbol=p["tradingsymbol"],
                product=p["product"],
                quantity=int(p["quantity"]),
                average_price=Decimal(str(p.get("average_price") or 0)).quantize(Decimal("0.0001")),
            )
            for p in positions.get("net", [])
            if int(p.get("quantity") or 0) != 0
        ],
        holdings=[
            BrokerHolding(
                exchange=h.get("exchange", "NSE"),
                symbol=h["tradingsymbol"],
                quantity=int(h.get("quantity") or 0) + int(h.get("t1_quantity") or 0),
                average_price=Decimal(str(h.get("average_price") or 0)).quantize(Decimal("0.0001")),
            )
            for h in holdings
        ],
        trades=None if trades is None else [BrokerTrade.model_validate(t) for t in trades],
    )


class HttpBrokerView:
    """The broker-gateway's view over HTTP (`BrokerClient`); unreachable -> 503."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, api_key: str | None = None):
        self.base_url = base_url
        self.timeout = timeout
        self.api_key = api_key  # the broker's reads need a key (the API or read-only key)

    def fetch(self) -> BrokerView:
        try:
            with BrokerClient(self.base_url, timeout=self.timeout, api_key=self.api_key) as broker:
                return view_from_kite(broker.positions(), broker.holdings(), broker.trades())
        except TemporaryError as exc:  # not reachable
            raise TemporaryError(str(exc), code="broker_unavailable") from None
        except ServiceError as exc:  # reachable but cannot answer (no session, Kite down)
            raise TemporaryError(
                f"the broker could not give its view: {exc}", code="broker_unavailable"
            ) from None
