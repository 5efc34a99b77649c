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

The book is in memory; its live orders are rebuilt from the journal at start (`restore`), so
paper orders survive a restart. A fill not yet journaled when the process dies never happened:
the order meets later ticks again.
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

from dalal_broker.journal import Journal, OrderRow
from dalal_broker.kite import KiteRejected
from dalal_broker.prices import LastPrices
from dalal_shared import fills
from dalal_shared.ids import new_id
from dalal_shared.logging import get_logger
from dalal_shared.messages import Envelope, MessageDecodeError, PlaceOrder, Tick
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
            "tag": t.client_order_id,
            "tags": [t.client_order_id],
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

    def __init__(self, journal: Journal, fill: fills.FillConfig | None = None):
        self.journal = journal
        self.fill = fill or fills.FillConfig()
        self._orders: dict[str, PaperOrder] = {}
        self._trades: list[PaperTrade] = []
        self._markets: dict[tuple[str, str], _Market] = {}

    # ------------------------------------------------------------------ restart

    def restore(self) -> int:
        """Rebuild the live orders from the journal (blocking SQL: run it in a thread)."""
        restored = 0
        for row in self.journal.live():
            if row.broker_order_id is None or row.broker_order_id in self._orders:
                continue
            self._restore(row)
            restored += 1
        return restored

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

    async def place_order(
        self, command: PlaceOrder, *, market_protection: Decimal | None, algo_id: str | None
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

    async def orders(self) -> list[dict[str, Any]]:
        return [o.to_kite() for o in self._orders.values()]

    async def trades(self) -> list[dict[str, Any]]:
        return [t.to_kite() for t in self._trades]

    async def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return [t.to_kite() for t in self._trades if t.order_id == order_id]

    async def find_by_tag(self, tag: str) -> dict[str, Any] | None:
        for order in self._orders.values():
            if order.terms.client_order_id == tag:
                return order.to_kite()
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
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                if _stream_id(entry_id) <= _stream_id(self.last_id or "0-0"):
                    continue
                self.last_id = entry_id
                try:
                    message = Envelope.from_fields(fields).message
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
