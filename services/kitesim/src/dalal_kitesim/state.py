"""kitesim's state on disk, so a restarted kitesim is the same exchange: the same simulated day and
time, tokens (the ticker reconnects with its token), the day's orders with their history, trades,
positions, holdings, funds and the charges of the day.

One JSON snapshot, written atomically (a temporary file in the same directory, then a rename), so
a SIGKILL leaves the previous snapshot or the new one, never half of one (the last save before a
shutdown is also fsynced; a crash of the machine itself may lose the last moments). The
simulator writes it before answering any request that changed something and after each clock
step that changed the book (so no client sees an order or a fill that a crash would forget), and
at least once a second while the clock runs. An order is re-encoded only when it changed, and
its history is kept as each entry's changes. Decimals and times are tagged (`{"$d": "1.05"}`,
`{"$t": iso}`), so money stays exact. The snapshot belongs to one replay: a different start date
or seed starts afresh (the old file is left as `<name>.stale`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from dalal_kitesim.clock import MarketClock
from dalal_kitesim.exchange import Exchange, Holding, Order, Position, Trade
from dalal_kitesim.gtt import GttBook
from dalal_kitesim.session import SessionStore
from dalal_shared.charges import ChargesBreakdown, Side, TradeFill
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import IST

log = get_logger(__name__)

VERSION = 1


def encode(value: Any) -> Any:
    """JSON-safe form of state values: Decimals and datetimes tagged, containers recursed."""
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, date):
        return {"$day": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            (key, raw), = value.items()  # fmt: skip
            if key == "$d":
                return Decimal(raw)
            if key == "$t":
                return datetime.fromisoformat(raw)
            if key == "$day":
                return date.fromisoformat(raw)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _fields(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip
    }


def history_deltas(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An order's history (Kite's order dicts, JSON-safe already) as each entry's changes from
    the one before: most of ~45 fields never change, so this is a fraction of the size."""
    out: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    for entry in history:
        out.append({k: v for k, v in entry.items() if k not in before or before[k] != v})
        before = entry
    return out


def history_entries(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    for delta in deltas:
        before = {**before, **delta}
        out.append(before)
    return out


OrderCache = dict[str, tuple[tuple[Any, ...], str]]
ORDERS_SLOT = "\u0000orders"  # where the orders' JSON goes into the snapshot's text


def _order(order: Order, cache: OrderCache) -> str:
    """An order's saved JSON, re-encoded only when something of it changed since last time."""
    key = (
        len(order.history), order.status, order.filled_quantity, order.seen_tick,
        order.filled_in_bar, order.bar_start, order.triggered, order.protection_price,
    )  # fmt: skip
    hit = cache.get(order.order_id)
    if hit is not None and hit[0] == key:
        return hit[1]
    row = {**_fields(order, ("history",)), "history": history_deltas(order.history)}
    text = json.dumps(row, separators=(",", ":"))
    cache[order.order_id] = (key, text)
    return text


# -- what is saved --------------------------------------------------------------------------
def snapshot(
    *,
    clock: MarketClock,
    exchange: Exchange,
    sessions: SessionStore,
    identity: dict[str, Any],
    cache: OrderCache | None = None,
    gtts: GttBook | None = None,
) -> dict[str, Any]:
    cache = {} if cache is None else cache
    for gone in [oid for oid in cache if oid not in exchange.orders]:
        del cache[gone]
    return {
        "version": VERSION,
        "identity": identity,
        "clock": {
            "day": clock.day.isoformat(),
            "now": clock.now.isoformat(),
            "square_off_done": clock.after_square_off,
            "closed": clock.closed,
            "prev_closes": {
                str(token): str(state.prev_close) for token, state in clock.states.items()
            },
        },
        "sessions": sessions.dump(),
        "gtts": gtts.dump() if gtts is not None else {},
        "exchange": {
            # JSON text already (spliced in by `dumps`): an unchanged order costs nothing
            "orders": ORDERS_SLOT,
            "orders_json": "[" + ",".join(_order(o, cache) for o in exchange.orders.values()) + "]",
            "trades": [
                {
                    "trade_id": t.trade_id,
                    "order_id": t.order.order_id,
                    "quantity": t.quantity,
                    "price": encode(t.price),
                    "ts": encode(t.ts),
                }
                for t in exchange.trades
            ],
            "positions": [
                {**_fields(p, ("instrument",)), "token": p.instrument.instrument_token}
                for p in exchange.positions.values()
            ],
            "holdings": [
                {**_fields(h, ("instrument",)), "token": h.instrument.instrument_token}
                for h in exchange.holdings.values()
            ],
            "opening_balance": encode(exchange.opening_balance),
            "charges_today": _fields(exchange.charges_today),
            "seq": [exchange._order_seq, exchange._exchange_seq, exchange._trade_seq],
        },
    }


def restore(
    data: dict[str, Any],
    *,
    clock: MarketClock,
    exchange: Exchange,
    sessions: SessionStore,
    gtts: GttBook | None = None,
) -> None:
    c = data["clock"]
    clock.restore(
        day=date.fromisoformat(c["day"]),
        now=datetime.fromisoformat(c["now"]),
        square_off_done=c["square_off_done"],
        closed=c["closed"],
        prev_closes={int(k): Decimal(v) for k, v in c["prev_closes"].items()},
    )
    sessions.restore(data["sessions"])
    if gtts is not None:
        gtts.load(data.get("gtts") or {})
    ex = data["exchange"]
    orders = {}
    for row in ex["orders"]:
        fields = decode({k: v for k, v in row.items() if k != "history"})
        order = Order(**fields, history=history_entries(row["history"]))
        orders[order.order_id] = order
    exchange.orders = orders
    exchange.trades = []
    for row in ex["trades"]:
        traded = orders.get(row["order_id"])
        if traded is None:
            continue
        exchange.trades.append(
            Trade(row["trade_id"], traded, row["quantity"], decode(row["price"]), decode(row["ts"]))
        )
    exchange.positions = {}
    for row in ex["positions"]:
        fields = decode(row)
        inst = exchange.instruments.get(fields.pop("token"))
        if inst is not None:
            exchange.positions[(inst.instrument_token, fields["product"])] = Position(
                inst, **fields
            )
    exchange.holdings = {}
    for row in ex["holdings"]:
        fields = decode(row)
        inst = exchange.instruments.get(fields.pop("token"))
        if inst is not None:
            exchange.holdings[inst.instrument_token] = Holding(inst, **fields)
    exchange.opening_balance = decode(ex["opening_balance"])
    exchange.charges_today = ChargesBreakdown(**decode(ex["charges_today"]))
    # the charges model's per-scrip day, rebuilt from the day's fills in their order (its
    # increments are already in charges_today)
    for trade in exchange.trades:
        inst = exchange.instruments.get(trade.order.instrument_token)
        if inst is not None:
            exchange.day_charges.add(
                inst.exchange,
                inst.tradingsymbol,
                trade.order.product,
                trade.ts.astimezone(IST).date(),
                TradeFill(
                    trade.order.order_id,
                    Side(trade.order.transaction_type),
                    trade.quantity,
                    trade.price,
                ),
            )
    exchange._order_seq, exchange._exchange_seq, exchange._trade_seq = ex["seq"]


# -- the file -------------------------------------------------------------------------------
class StateFile:
    def __init__(self, path: Path):
        self.path = path

    def load(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        """The saved snapshot of this replay, or None (none yet, another replay's, unreadable)."""
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            log.error("kitesim.state_unreadable", path=str(self.path), error=repr(exc))
            self._set_aside()
            return None
        if data.get("version") != VERSION or data.get("identity") != identity:
            log.warning(
                "kitesim.state_of_another_replay",
                path=str(self.path),
                saved=data.get("identity"),
                now=identity,
            )
            self._set_aside()
            return None
        return data

    def _set_aside(self) -> None:
        os.replace(self.path, self.path.with_name(self.path.name + ".stale"))

    @staticmethod
    def dumps(data: dict[str, Any]) -> str:
        ex = data["exchange"]
        orders = ex.pop("orders_json", None)
        text = json.dumps(data, separators=(",", ":"))
        if orders is not None:
            text = text.replace(json.dumps(ORDERS_SLOT), orders, 1)
            ex["orders_json"] = orders
        return text

    def save(self, data: dict[str, Any], *, sync: bool = False) -> None:
        """Replace the snapshot atomically. The rename alone survives a SIGKILL of kitesim (the
        file is in the OS's cache); `sync` (at shutdown) also flushes it to the disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(self.dumps(data))
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.path)
