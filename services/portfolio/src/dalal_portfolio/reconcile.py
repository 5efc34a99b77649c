"""Reconciliation: the ledger's view against the broker's, listing every break.

Plain domain code comparing two views. The broker side comes through `BrokerViewSource`: the
process wires `HttpBrokerView` (the broker-gateway's GET /positions, /holdings and /trades;
GET /reconcile answers 503 `broker_unavailable` when the broker cannot be reached), and POST
/reconcile takes a broker view in its body.

Kite shows delivery shares bought before today under holdings and today's trades under
positions, so the broker's CNC quantity of a symbol is holdings (incl. T+1) + today's net CNC
position; MIS/NRML quantities come from positions alone.
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

Money = Decimal


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
    ledger: dict[tuple[str, str, str], Position] = {p.key: p for p in positions if p.quantity != 0}
    broker_qty: dict[tuple[str, str, str], int] = {}
    broker_avg: dict[tuple[str, str, str], Decimal] = {}
    for h in view.holdings:
        key = (h.exchange, h.symbol, "CNC")
        broker_qty[key] = broker_qty.get(key, 0) + h.quantity
        broker_avg[key] = h.average_price
    for p in view.positions:
        key = (p.exchange, p.symbol, p.product)
        broker_qty[key] = broker_qty.get(key, 0) + p.quantity
        if key not in broker_avg or p.product != "CNC":
            broker_avg[key] = p.average_price
    broker_qty = {k: q for k, q in broker_qty.items() if q != 0}
    breaks: list[Break] = []
    for key in sorted(set(ledger) | set(broker_qty)):
        pos = ledger.get(key)
        qty = broker_qty.get(key)
        if pos is None:
            breaks.append(Break("missing_in_ledger", *key, None, str(qty)))
        elif qty is None:
            breaks.append(Break("missing_at_broker", *key, str(pos.quantity), None))
        elif qty != pos.quantity:
            breaks.append(Break("quantity_mismatch", *key, str(pos.quantity), str(qty)))
        elif abs(broker_avg[key] - pos.average_price) > price_tolerance_rupees:
            breaks.append(
                Break("average_price_mismatch", *key, str(pos.average_price), str(broker_avg[key]))
            )
    trades_compared = 0
    if view.trades is not None:
        mine = {f.trade_id: f for f in fills if f.charged}
        theirs = {t.trade_id: t for t in view.trades}
        trades_compared = len(theirs)
        for trade_id, t in sorted(theirs.items()):
            f = mine.get(trade_id)
            key = (t.exchange, t.symbol, t.product)
            if f is None:
                desc = f"{t.side} {t.quantity} @ {t.price}"
                breaks.append(Break("trade_missing_in_ledger", *key, None, desc, trade_id))
            elif (f.symbol, f.side, f.quantity, f.product) != (
                t.symbol, t.side, t.quantity, t.product
            ) or abs(f.price - t.price) > price_tolerance_rupees:  # fmt: skip
                breaks.append(
                    Break(
                        "trade_mismatch", *key,
                        f"{f.side} {f.quantity} {f.product} @ {f.price}",
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

    def __init__(self, base_url: str, *, timeout: float = 10.0):
        self.base_url = base_url
        self.timeout = timeout

    def fetch(self) -> BrokerView:
        try:
            with BrokerClient(self.base_url, timeout=self.timeout) as broker:
                return view_from_kite(broker.positions(), broker.holdings(), broker.trades())
        except TemporaryError as exc:  # not reachable
            raise TemporaryError(str(exc), code="broker_unavailable") from None
        except ServiceError as exc:  # reachable but cannot answer (no session, Kite down)
            raise TemporaryError(
                f"the broker could not give its view: {exc}", code="broker_unavailable"
            ) from None
