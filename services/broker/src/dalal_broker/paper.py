"""The paper adapter: orders fill here, from live ticks, instead of at Kite.

`PaperBroker` answers the same calls as `KiteGateway` (place, modify, cancel, the order book,
trades) with Kite-shaped dicts, so the desk journals, tracks and publishes paper orders exactly
as it does real ones (same events, same idempotency, same guards). Fills come from the shared
fill model (`dalal_shared.fills`, as in kitesim and the backtester) meeting the `market.ticks`
stream one tick at a time:

* a tick's traded volume is the rise of Kite's cumulative day volume since the symbol's previous
  tick; ticks are grouped into one-minute bars, and one order takes at most the model's
  participation share of a bar's volume (a partial fill; the rest waits for later ticks). A tick
  without volume information (LTP mode, or the first tick seen of a symbol that day) sets no
  volume limit, as in the model;
* MARKET / SL-M orders carry market protection from the last price seen when they arrive (or the
  trigger), and never fill beyond it.

Protective stops (GTTs) are kept here too, with the gateway's GTT calls and Kite's GTT shapes,
so `protections.ProtectionDesk` runs unchanged in paper mode: a trigger watches the ticks of its
symbol and, once crossed, places its LIMIT order in the paper book without a tag (as Kite's GTT
orders come), filled by the same model from that tick on; the trigger then reads `triggered`
with the order's id, and the protection desk journals that order under the protection's id.

The book is in memory; its live orders (and the active triggers, from the journal's ACTIVE
protections) are rebuilt at start (`restore`), so paper orders and stops survive a restart. A
fill not yet journaled when the process dies never happened: the order meets later ticks again
(a trigger whose order was not journaled yet is active again and fires on a later tick).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from dalal_broker.adapter import BrokerOrder, BrokerTrade
from dalal_broker.gtt_terms import gtt_request
from dalal_broker.journal import Journal, OrderRow, ProtectionRow
from dalal_broker.kite import KiteRejected
from dalal_broker.prices import LastPrices
from dalal_shared import fills
from dalal_shared.bus import decode_envelope
from dalal_shared.ids import new_id
from dalal_shared.logging import get_logger
from dalal_shared.messages import MessageDecodeError, PlaceOrder, Tick
from dalal_shared.streams import MARKET_TICKS
from dalal_shared.timeutil import IST, utcnow

log = get_logger(__name__)

PAPER_FILLS = Counter("dalal_broker_paper_fills_total", "Paper fills made from live ticks")
PAPER_TICKS = Counter("dalal_broker_paper_ticks_total", "Ticks the paper adapter has seen")
PAPER_BOOK = Gauge("dalal_broker_paper_book_orders", "Orders held in the paper book")

OPEN = frozenset({"OPEN", "TRIGGER PENDING"})
ZERO = Decimal(0)


@dataclass
class PaperOrder:
    order_id: str
    terms: PlaceOrder
    placed_at: datetime
    status: str
    market_protection: Decimal | None = None
    status_message: str | None = None
    filled_quantity: int = 0
    fill_value: Decimal = ZERO
    trades: int = 0
    protection_price: Decimal | None = None
    untagged: bool = False  # placed by a trigger (Kite's GTT orders carry no tag)
    seen_tick: bool = False
    bar_start: datetime | None = None
    filled_in_bar: int = 0
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> tuple[str, str]:
        return (self.terms.exchange, self.terms.symbol)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def pending_quantity(self) -> int:
        return self.terms.quantity - self.filled_quantity if self.is_open else 0

    @property
    def average_price(self) -> Decimal:
        if self.filled_quantity == 0:
            return ZERO
        return (self.fill_value / self.filled_quantity).quantize(Decimal("0.01"))

    def to_kite(self) -> dict[str, Any]:
        t = self.terms
        return {
            "order_id": self.order_id,
            "status": self.status,
            "status_message": self.status_message,
            "order_timestamp": self.placed_at,
            "exchange_update_timestamp": self.updated_at,
            "variety": t.variety,
            "exchange": t.exchange,
            "tradingsymbol": t.symbol,
            "order_type": t.order_type,
            "transaction_type": t.side,
            "validity": t.validity,
            "product": t.product,
            "quantity": t.quantity,
            "price": float(t.price or 0),
            "trigger_price": float(t.trigger_price or 0),
            "average_price": str(self.average_price) if self.filled_quantity else 0,
            "filled_quantity": self.filled_quantity,
            "pending_quantity": self.pending_quantity,
            "cancelled_quantity": (
                t.quantity - self.filled_quantity if self.status == "CANCELLED" else 0
            ),
            "tag": None if self.untagged else t.client_order_id,
            "tags": [] if self.untagged else [t.client_order_id],
        }


@dataclass(frozen=True)
class PaperTrade:
    trade_id: str
    order_id: str
    quantity: int
    price: Decimal
    ts: datetime

    def to_kite(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "order_id": self.order_id,
            "quantity": self.quantity,
            "average_price": str(self.price),
            "fill_timestamp": self.ts,
        }


@dataclass
class PaperGtt:
    """A GTT trigger in the paper book, read back in Kite's shape (`to_kite`)."""

    id: int
    kind: str  # "single" or "two-leg"
    exchange: str
    symbol: str
    values: list[Decimal]
    orders: list[dict[str, Any]]  # Kite's order legs (transaction_type, quantity, price, ...)
    fires_above: bool  # a single trigger set above the price fires on a rise
    created_at: datetime
    status: str = "active"
    results: list[dict[str, Any] | None] = field(default_factory=list)
    updated_at: datetime = field(default_factory=utcnow)

    def leg_for(self, price: Decimal) -> int | None:
        """Which leg the price fires (None: not crossed)."""
        if self.kind == "two-leg":
            lower, upper = self.values
            return 0 if price <= lower else 1 if price >= upper else None
        (value,) = self.values
        crossed = price >= value if self.fires_above else price <= value
        return 0 if crossed else None

    def to_kite(self) -> dict[str, Any]:
        results = self.results or [None] * len(self.orders)
        return {
            "id": self.id,
            "type": self.kind,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "condition": {
                "exchange": self.exchange,
                "tradingsymbol": self.symbol,
                "trigger_values": [float(v) for v in self.values],
            },
            "orders": [
                {**leg, "exchange": self.exchange, "tradingsymbol": self.symbol, "result": r}
                for leg, r in zip(self.orders, results, strict=True)
            ],
        }


def _gtt_from_request(gtt_id: int, request: dict[str, Any], created_at: datetime) -> PaperGtt:
    """A trigger from kiteconnect's `place_gtt` arguments, checked as Kite checks them."""
    kind = request.get("trigger_type")
    values = [Decimal(str(v)) for v in request.get("trigger_values") or []]
    orders = [dict(o) for o in request.get("orders") or []]
    want = {"single": 1, "two-leg": 2}.get(str(kind))
    if want is None or len(values) != want or len(orders) != want:
        raise KiteRejected(
            f"a {kind} trigger takes matching trigger values and orders", code="input"
        )
    if any(v <= 0 for v in values) or any(o.get("order_type") != "LIMIT" for o in orders):
        raise KiteRejected("trigger values must be positive and GTT orders LIMIT", code="input")
    last = Decimal(str(request.get("last_price") or 0))
    if kind == "two-leg" and not values[0] < last < values[1]:
        raise KiteRejected(
            f"for a two-leg trigger the last price {last} must lie between its values",
            code="input",
        )
    return PaperGtt(
        id=gtt_id,
        kind=str(kind),
        exchange=str(request["exchange"]),
        symbol=str(request["tradingsymbol"]),
        values=values,
        orders=orders,
        fires_above=kind == "single" and values[0] > last,
        created_at=created_at,
    )


@dataclass
class _Market:
    """What the adapter knows of one symbol's trading from the ticks."""

    last_price: Decimal | None = None
    day: date | None = None
    cum_volume: int | None = None
    bar_start: datetime | None = None
    bar_volume: int = 0


def _rejected(message: str) -> KiteRejected:
    return KiteRejected(message, code="order")


class PaperBroker:
    """The order calls of `KiteGateway`, answered from a local book filled by ticks."""

    def __init__(
        self,
        journal: Journal,
        fill: fills.FillConfig | None = None,
        *,
        protection_pct: Decimal = Decimal("2"),
    ):
        self.journal = journal
        self.fill = fill or fills.FillConfig()
        self.protection_pct = protection_pct  # the stop leg's limit under its trigger (restore)
        self._orders: dict[str, PaperOrder] = {}
        self._trades: list[PaperTrade] = []
        self._markets: dict[tuple[str, str], _Market] = {}
        self._gtts: dict[int, PaperGtt] = {}
        self._gtt_seq = int(utcnow().timestamp() * 1000)  # ids stay unique across restarts

    # ------------------------------------------------------------------ restart

    def restore(self) -> int:
        """Rebuild the live orders and the active triggers from the journal (blocking SQL: run
        it in a thread); how many orders."""
        restored = 0
        for row in self.journal.live():
            if row.broker_order_id is None or row.broker_order_id in self._orders:
                continue
            self._restore(row)
            restored += 1
        for protection in self.journal.protections(["ACTIVE"]):
            if protection.gtt_id is not None and protection.gtt_id not in self._gtts:
                self._restore_gtt(protection)
        return restored

    def _restore_gtt(self, row: ProtectionRow) -> None:
        assert row.gtt_id is not None
        c = row.command
        request = gtt_request(c, c.stop_price, self.protection_pct)
        values = [c.stop_price] if c.target_price is None else [c.stop_price, c.target_price]
        self._gtts[row.gtt_id] = PaperGtt(
            id=row.gtt_id,
            kind=request["trigger_type"],
            exchange=c.exchange,
            symbol=c.symbol,
            values=values,
            orders=request["orders"],
            fires_above=False,  # a protection's stop sells on a fall
            created_at=row.updated_at,
        )

    def _restore(self, row: OrderRow) -> None:
        assert row.broker_order_id is not None
        order = PaperOrder(
            order_id=row.broker_order_id,
            terms=row.current,
            placed_at=row.created_at,
            status=row.status if row.status in OPEN else "OPEN",
            market_protection=row.current.market_protection,
            seen_tick=True,  # it was resting on the book before the restart
        )
        for t in self.journal.trades_of(row.client_order_id):
            trade = PaperTrade(
                trade_id=str(t["trade_id"]),
                order_id=order.order_id,
                quantity=int(t["quantity"]),  # type: ignore[call-overload]
                price=Decimal(str(t["price"])),
                ts=t["filled_at"],  # type: ignore[arg-type]
            )
            self._trades.append(trade)
            order.filled_quantity += trade.quantity
            order.fill_value += trade.price * trade.quantity
            order.trades += 1
        self._orders[order.order_id] = order

    async def prune(self) -> int:
        """Forget closed orders (and their trades) the journal has recorded as closed, so the
        book holds what is still live. The book is changed on the event loop only."""
        closed = [o.order_id for o in self._orders.values() if not o.is_open]
        gone = await asyncio.to_thread(self._journaled_closed, closed) if closed else set()
        for order_id in gone:
            self._orders.pop(order_id, None)
        if gone:
            self._trades = [t for t in self._trades if t.order_id not in gone]
        PAPER_BOOK.set(len(self._orders))
        return len(gone)

    def _journaled_closed(self, order_ids: list[str]) -> set[str]:
        out = set()
        for order_id in order_ids:
            row = self.journal.by_broker_id(order_id)
            if row is not None and row.terminal:  # its fills and its status are journaled
                out.add(order_id)
        return out

    # ------------------------------------------------------------------ the gateway's calls

    def take_order_token(self) -> None:
        return None  # paper orders take no Kite budget

    async def place_order(
        self,
        command: PlaceOrder,
        *,
        market_protection: Decimal | None,
        algo_id: str | None,
        token: Awaitable[object] | None = None,
    ) -> str:
        order = PaperOrder(
            order_id=f"paper-{new_id()}",
            terms=command,
            placed_at=utcnow(),
            status="TRIGGER PENDING" if command.order_type in ("SL", "SL-M") else "OPEN",
            market_protection=market_protection,
        )
        if command.order_type == "MARKET":
            self._protect(order, self._markets.get(order.key, _Market()).last_price)
        self._orders[order.order_id] = order
        PAPER_BOOK.set(len(self._orders))
        return order.order_id

    async def modify_order(self, variety: str, order_id: str, **changes: Any) -> str:
        order = self._open(order_id, "modified")
        update = {
            k: Decimal(str(v)) if k in ("price", "trigger_price") else v for k, v in changes.items()
        }
        terms = PlaceOrder.model_validate({**order.terms.model_dump(), **update})
        if terms.order_type == "MARKET":
            terms = terms.model_copy(update={"price": None})
        order.terms = terms
        order.seen_tick = False  # the new terms meet the next tick as a new arrival would
        order.updated_at = utcnow()
        if order.status == "TRIGGER PENDING" and terms.order_type in ("MARKET", "LIMIT"):
            order.status = "OPEN"
        return order_id

    async def cancel_order(self, variety: str, order_id: str) -> str:
        order = self._open(order_id, "cancelled")
        order.status = "CANCELLED"
        order.status_message = "cancelled by the user (paper)"
        order.updated_at = utcnow()
        return order_id

    async def orders(self) -> list[BrokerOrder]:
        return [BrokerOrder.from_kite(o.to_kite()) for o in self._orders.values()]

    async def trades(self) -> list[BrokerTrade]:
        return [BrokerTrade.from_kite(t.to_kite()) for t in self._trades]

    async def order_trades(self, order_id: str) -> list[BrokerTrade]:
        return [BrokerTrade.from_kite(t.to_kite()) for t in self._trades if t.order_id == order_id]

    async def find_by_tag(self, tag: str) -> BrokerOrder | None:
        for order in self._orders.values():
            if not order.untagged and order.terms.client_order_id == tag:
                return BrokerOrder.from_kite(order.to_kite())
        return None

    async def positions(self) -> dict[str, Any]:
        """Today's net positions (IST day) from the journal's paper trades, Kite-shaped."""
        return await asyncio.to_thread(self._positions)

    async def holdings(self) -> list[dict[str, Any]]:
        return []  # paper trading keeps no demat account; the portfolio ledger has the positions

    def _positions(self) -> dict[str, Any]:
        today = utcnow().astimezone(IST).date()
        book: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in self.journal.list(limit=5000):
            c = row.command
            for t in self.journal.trades_of(row.client_order_id):
                filled_at = t["filled_at"]
                assert isinstance(filled_at, datetime)
                if filled_at.astimezone(IST).date() != today:
                    continue
                p = book.setdefault(
                    (c.exchange, c.symbol, c.product),
                    {"buy_quantity": 0, "sell_quantity": 0, "buy_value": ZERO, "sell_value": ZERO},
                )
                side = "buy" if c.side == "BUY" else "sell"
                p[f"{side}_quantity"] += int(t["quantity"])  # type: ignore[call-overload]
                p[f"{side}_value"] += Decimal(str(t["price"])) * int(t["quantity"])  # type: ignore[call-overload]
        net = []
        for (exchange, symbol, product), p in sorted(book.items()):
            bq, sq = p["buy_quantity"], p["sell_quantity"]
            net.append(
                {
                    "exchange": exchange,
                    "tradingsymbol": symbol,
                    "product": product,
                    "quantity": bq - sq,
                    "buy_quantity": bq,
                    "sell_quantity": sq,
                    "buy_price": str((p["buy_value"] / bq).quantize(Decimal("0.01")))
                    if bq
                    else "0",
                    "sell_price": str((p["sell_value"] / sq).quantize(Decimal("0.01")))
                    if sq
                    else "0",
                }
            )
        return {"net": net, "day": net}

    # ------------------------------------------------------------------ GTT triggers

    async def place_gtt(self, **request: Any) -> int:
        self._gtt_seq += 1
        gtt = _gtt_from_request(self._gtt_seq, request, utcnow())
        self._gtts[gtt.id] = gtt
        return gtt.id

    async def modify_gtt(self, trigger_id: int, **request: Any) -> int:
        old = self._active_gtt(trigger_id, "modified")
        self._gtts[trigger_id] = _gtt_from_request(trigger_id, request, old.created_at)
        return trigger_id

    async def delete_gtt(self, trigger_id: int) -> None:
        gtt = self._active_gtt(trigger_id, "deleted")
        gtt.status, gtt.updated_at = "deleted", utcnow()

    async def gtt(self, trigger_id: int) -> dict[str, Any]:
        gtt = self._gtts.get(trigger_id)
        if gtt is None:
            raise KiteRejected(f"Invalid trigger id {trigger_id}.", code="input")
        return gtt.to_kite()

    async def gtts(self) -> list[dict[str, Any]]:
        return [g.to_kite() for g in self._gtts.values()]

    def _active_gtt(self, trigger_id: int, verb: str) -> PaperGtt:
        gtt = self._gtts.get(trigger_id)
        if gtt is None:
            raise KiteRejected(f"Invalid trigger id {trigger_id}.", code="input")
        if gtt.status != "active":
            raise KiteRejected(
                f"Trigger {trigger_id} is {gtt.status} and cannot be {verb}.", code="input"
            )
        return gtt

    def _fire(self, gtt: PaperGtt, leg: int, tick: fills.Tick) -> int:
        """Place the crossed leg's LIMIT order (untagged, as Kite's) and meet it with the tick
        that fired it; the trigger reads `triggered` with the order's id."""
        spec = gtt.orders[leg]
        order = PaperOrder(
            order_id=f"paper-{new_id()}",
            terms=PlaceOrder(
                client_order_id=f"GTT-{gtt.id}"[:20],
                exchange=gtt.exchange,
                symbol=gtt.symbol,
                side=spec["transaction_type"],
                quantity=int(spec["quantity"]),
                order_type="LIMIT",
                product=spec.get("product") or "CNC",
                price=Decimal(str(spec["price"])),
            ),
            placed_at=utcnow(),
            status="OPEN",
            untagged=True,
        )
        self._orders[order.order_id] = order
        gtt.results = [None] * len(gtt.orders)
        gtt.results[leg] = {
            "transaction_type": spec["transaction_type"],
            "quantity": int(spec["quantity"]),
            "price": float(spec["price"]),
            "triggered_at": float(tick.price),
            "timestamp": tick.ts,
            "order_result": {"status": "success", "order_id": order.order_id},
        }
        gtt.status, gtt.updated_at = "triggered", utcnow()
        log.info(
            "paper.gtt_triggered", gtt_id=gtt.id, order_id=order.order_id, price=str(tick.price)
        )
        PAPER_BOOK.set(len(self._orders))
        return self._match(order, tick)

    def _open(self, order_id: str, verb: str) -> PaperOrder:
        order = self._orders.get(order_id)
        if order is None:
            raise _rejected(f"no paper order {order_id}")
        if not order.is_open:
            raise _rejected(f"the order is {order.status} and cannot be {verb}")
        return order

    # ------------------------------------------------------------------ matching

    def _protect(self, order: PaperOrder, reference: Decimal | None) -> None:
        if order.market_protection and reference is not None:
            order.protection_price = fills.protection_limit(
                order.terms.side, reference, order.market_protection, self.fill.tick_size
            )

    def on_tick(self, tick: Tick) -> int:
        """Meet every open order of the tick's symbol with it; the number of fills made."""
        PAPER_TICKS.inc()
        key = (tick.exchange, tick.symbol)
        market = self._markets.setdefault(key, _Market())
        ts = tick.exchange_ts
        day = ts.astimezone(IST).date()
        traded = 0
        if tick.volume > 0:
            if market.day == day and market.cum_volume is not None:
                traded = max(0, tick.volume - market.cum_volume)
            market.day, market.cum_volume = day, tick.volume
        minute = ts.replace(second=0, microsecond=0)
        if market.bar_start != minute:
            market.bar_start, market.bar_volume = minute, 0
        market.bar_volume += traded
        market.last_price = tick.last_price
        model_tick = fills.Tick(
            ts=ts,
            price=tick.last_price,
            volume=traded,
            bar_start=minute,
            bar_volume=market.bar_volume,
        )
        made = 0
        for order in list(self._orders.values()):
            if order.key == key and order.is_open:
                made += self._match(order, model_tick)
        for gtt in list(self._gtts.values()):
            if gtt.status == "active" and (gtt.exchange, gtt.symbol) == key:
                leg = gtt.leg_for(tick.last_price)
                if leg is not None:
                    made += self._fire(gtt, leg, model_tick) or 1  # a new order to journal
        return made

    def _match(self, order: PaperOrder, tick: fills.Tick) -> int:
        terms = order.terms
        side = fills.Side(terms.side)
        if order.status == "TRIGGER PENDING":
            assert terms.trigger_price is not None
            if not fills.is_triggered(side, terms.trigger_price, tick.price):
                return 0
            order.status = "OPEN"
            order.seen_tick = False
            if terms.order_type == "SL-M":
                self._protect(order, tick.price)
        if order.protection_price is None and terms.order_type in ("MARKET", "SL-M"):
            self._protect(order, tick.price)
        if order.bar_start != tick.bar_start:
            order.bar_start, order.filled_in_bar = tick.bar_start, 0
        limit = terms.order_type in ("LIMIT", "SL")
        model_terms = fills.OrderTerms(
            side=side,
            order_type=fills.OrderType.LIMIT if limit else fills.OrderType.MARKET,
            quantity=order.pending_quantity,
            price=terms.price if limit else None,
            protection_price=order.protection_price,
        )
        fill = fills.match(
            model_terms,
            tick,
            self.fill,
            resting=order.seen_tick,
            filled_in_bar=order.filled_in_bar,
        )
        order.seen_tick = True
        made = 0
        if fill is not None:
            order.filled_in_bar += fill.quantity
            order.trades += 1
            self._trades.append(
                PaperTrade(
                    trade_id=f"{order.order_id}-{order.trades}",
                    order_id=order.order_id,
                    quantity=fill.quantity,
                    price=fill.price,
                    ts=tick.ts,
                )
            )
            order.filled_quantity += fill.quantity
            order.fill_value += fill.price * fill.quantity
            if order.filled_quantity >= terms.quantity:
                order.status = "COMPLETE"
            PAPER_FILLS.inc()
            made = 1
        if order.is_open and terms.validity == "IOC":
            order.status = "CANCELLED"
            order.status_message = "IOC order: the unfilled quantity was cancelled (paper)"
        order.updated_at = utcnow()
        return made


class TickFollower:
    """Reads `market.ticks` from the moment it is primed (no consumer group: a paper order meets
    only the ticks after it, never a backlog) and hands each Tick to the paper book (paper mode)
    and to the guards' last prices (every mode)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        paper: PaperBroker | None,
        on_change: Callable[[], Awaitable[None]],
        *,
        prices: LastPrices | None = None,
        block_ms: int = 500,
    ):
        self.redis = redis
        self.paper = paper
        self.prices = prices
        self.on_change = on_change
        self.block_ms = block_ms
        self.last_id: str | None = None
        self._pending_change: asyncio.Task[None] | None = None

    async def prime(self) -> None:
        """Remember where the stream ends now: every tick after this point is seen."""
        last = await self.redis.xrevrange(MARKET_TICKS, count=1)
        entry_id = last[0][0] if last else b"0-0"
        self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def run(self) -> None:
        if self.last_id is None:
            await self.prime()
        backoff = 0.5
        while True:
            try:
                reply = await self.redis.xread(
                    {MARKET_TICKS: self.last_id or "0-0"}, block=self.block_ms, count=500
                )
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("paper.ticks_read_failed", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if self._handle(reply):
                await self._changed()

    async def catch_up(self) -> None:
        """Read the ticks published up to now at once (the guards want the latest price before
        they value a MARKET order); nothing before `prime`."""
        if self.last_id is None:
            return
        try:
            reply = await self.redis.xread({MARKET_TICKS: self.last_id}, count=10_000)
        except Exception as exc:
            log.warning("paper.ticks_read_failed", error=repr(exc))
            return
        if self._handle(reply):
            self._pending_change = asyncio.create_task(self._changed())

    def _handle(self, reply: Any) -> int:
        """Hand each tick after `last_id` on (the run loop and `catch_up` may both have read
        one: it counts once); the number of paper fills made."""
        made = 0
        last = _stream_id(self.last_id or "0-0")
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                this = _stream_id(entry_id)
                if this <= last:
                    continue
                self.last_id, last = entry_id, this
                try:
                    # the bus's decoder: the same envelope (or error), at about half the cost
                    message = decode_envelope(fields).message
                except MessageDecodeError:
                    continue
                if isinstance(message, Tick):
                    if self.prices is not None:
                        self.prices.on_tick(message)
                    if self.paper is not None:
                        made += self.paper.on_tick(message)
        return made

    async def _changed(self) -> None:
        if self.paper is None:
            return
        try:
            await self.on_change()
            await self.paper.prune()
        except Exception as exc:  # the tracker's next round journals them
            log.error("paper.sync_failed", error=repr(exc))


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
