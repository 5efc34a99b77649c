"""Kite's ticker wire format and the fan-out of ticks to WebSocket connections.

Binary frames, big-endian: a 2-byte packet count, then per packet a 2-byte length and the packet.
Packets: ltp 8 bytes; quote 44; full 184 (quote + last trade time, OI, OI high/low, exchange
time, then 10 depth entries of 12 bytes: quantity, price, orders (2) and 2 bytes of padding);
indices quote 28 / full 32. Prices are integers in paise. A 1-byte frame is a heartbeat. Order
updates go as text: `{"type": "order", "id": "", "data": {...order...}}`.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from dalal_kitesim.clock import MarketState
from dalal_shared.fills import Tick
from dalal_shared.timeutil import IST

MODE_LTP = "ltp"
MODE_QUOTE = "quote"
MODE_FULL = "full"
MODES = (MODE_LTP, MODE_QUOTE, MODE_FULL)
HEARTBEAT = b"\x00"
INDICES_SEGMENT = 9


_HUNDRED = Decimal(100)
_FULL_TAIL = struct.Struct(">IIIII" + "IIHH" * 10)


def paise(value: Decimal | float) -> int:
    if isinstance(value, Decimal):  # the hot path of the ticker: no text round trip
        return int((value * _HUNDRED).to_integral_value())
    return int((Decimal(str(value)) * 100).to_integral_value())


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


@dataclass(frozen=True, slots=True)
class DepthLevel:
    quantity: int
    price: Decimal
    orders: int


def synthetic_depth(
    state: MarketState, spread_bps: Decimal
) -> tuple[list[DepthLevel], list[DepthLevel]]:
    """Five bids and five asks around the last price, deterministic from the state."""
    tick = state.instrument.tick_size or Decimal("0.05")
    ltp = state.last_price
    if ltp <= 0:
        empty = [DepthLevel(0, Decimal(0), 0)] * 5
        return list(empty), list(empty)
    half = max(tick, (ltp * spread_bps / Decimal(20000) / tick).to_integral_value() * tick)
    base = max(1, state.last_quantity or 1)
    bids = [DepthLevel(base * (i + 1), ltp - half - tick * i, i + 1) for i in range(5)]
    asks = [DepthLevel(base * (i + 1), ltp + half + tick * i, i + 1) for i in range(5)]
    return bids, asks


def pack_ltp(token: int, last_price: Decimal) -> bytes:
    return struct.pack(">II", token, paise(last_price))


def pack_quote(state: MarketState, buy_quantity: int, sell_quantity: int) -> bytes:
    return struct.pack(
        ">IIIIIIIIIII",
        state.instrument.instrument_token,
        paise(state.last_price),
        state.last_quantity,
        paise(state.average_price),
        state.volume,
        buy_quantity,
        sell_quantity,
        paise(state.open),
        paise(state.high),
        paise(state.low),
        paise(state.prev_close),
    )


def _depth_paise(state: MarketState, spread_bps: Decimal) -> list[int] | None:
    """`synthetic_depth` flattened to (quantity, paise, orders, 0) x 10 in integer arithmetic,
    when the last price is a whole number of paise (always for replayed ticks); else None."""
    tick = state.instrument.tick_size or Decimal("0.05")
    ltp = state.last_price
    if ltp <= 0:
        return None
    ltp_paise = ltp * _HUNDRED
    if ltp_paise != ltp_paise.to_integral_value():
        return None
    tick_paise = tick * _HUNDRED
    if tick_paise != tick_paise.to_integral_value():
        return None
    half = max(tick, (ltp * spread_bps / Decimal(20000) / tick).to_integral_value() * tick)
    lp, hp, tp = int(ltp_paise), int(half * _HUNDRED), int(tick_paise)
    base = max(1, state.last_quantity or 1)
    depth: list[int] = []
    for i in range(5):
        depth += (base * (i + 1), lp - hp - tp * i, i + 1, 0)
    for i in range(5):
        depth += (base * (i + 1), lp + hp + tp * i, i + 1, 0)
    return depth


def pack_full(state: MarketState, spread_bps: Decimal) -> bytes:
    depth = _depth_paise(state, spread_bps)
    if depth is None:
        bids, asks = synthetic_depth(state, spread_bps)
        depth = []
        for level in bids + asks:
            depth += (level.quantity, paise(level.price), level.orders, 0)
    side = sum(depth[0:20:4])  # the five bid (= ask) quantities
    quote = pack_quote(state, side, side)
    tail = _FULL_TAIL.pack(_epoch(state.last_trade_time), 0, 0, 0, _epoch(state.timestamp), *depth)
    return quote + tail


def pack_index(state: MarketState, *, full: bool) -> bytes:
    change = state.last_price - state.prev_close if state.prev_close else Decimal(0)
    out = struct.pack(
        ">IIIIIIi",
        state.instrument.instrument_token,
        paise(state.last_price),
        paise(state.high),
        paise(state.low),
        paise(state.open),
        paise(state.prev_close),
        paise(change),
    )
    if full:
        out += struct.pack(">I", _epoch(state.timestamp))
    return out


def pack_packet(state: MarketState, mode: str, spread_bps: Decimal) -> bytes:
    token = state.instrument.instrument_token
    if mode == MODE_LTP:
        return pack_ltp(token, state.last_price)
    if state.instrument.is_index:
        return pack_index(state, full=mode == MODE_FULL)
    if mode == MODE_FULL:
        return pack_full(state, spread_bps)
    bids, asks = synthetic_depth(state, spread_bps)
    return pack_quote(state, sum(b.quantity for b in bids), sum(a.quantity for a in asks))


def frame(packets: list[bytes]) -> bytes:
    out = bytearray(struct.pack(">H", len(packets)))
    for packet in packets:
        out += struct.pack(">H", len(packet)) + packet
    return bytes(out)


def split_frame(data: bytes) -> list[bytes]:
    if len(data) < 2:
        return []
    (count,) = struct.unpack(">H", data[:2])
    packets, j = [], 2
    for _ in range(count):
        (length,) = struct.unpack(">H", data[j : j + 2])
        packets.append(data[j + 2 : j + 2 + length])
        j += 2 + length
    return packets


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, IST).isoformat()


def decode_packet(packet: bytes) -> dict[str, Any]:
    """One packet as Kite's own fixtures (`ticker_*.json`) describe it."""

    def u(start: int, end: int, fmt: str = "I") -> int:
        return int(struct.unpack(">" + fmt, packet[start:end])[0])

    def p(start: int) -> float:
        return u(start, start + 4) / 100

    token = u(0, 4)
    tradable = (token & 0xFF) != INDICES_SEGMENT
    if len(packet) == 8:
        return {
            "mode": MODE_LTP,
            "tradable": tradable,
            "instrument_token": token,
            "last_price": p(4),
        }
    if len(packet) in (28, 32):
        d: dict[str, Any] = {
            "mode": MODE_QUOTE if len(packet) == 28 else MODE_FULL,
            "tradable": tradable,
            "instrument_token": token,
            "last_price": p(4),
            "ohlc": {"high": p(8), "low": p(12), "open": p(16), "close": p(20)},
        }
        close = d["ohlc"]["close"]
        d["change"] = (d["last_price"] - close) * 100 / close if close else 0
        if len(packet) == 32:
            d["timestamp"] = _iso(u(28, 32))
        return d
    if len(packet) not in (44, 184):
        raise ValueError(f"unknown packet length {len(packet)}")
    d = {
        "mode": MODE_QUOTE if len(packet) == 44 else MODE_FULL,
        "tradable": tradable,
        "instrument_token": token,
        "last_price": p(4),
        "last_quantity": u(8, 12),
        "average_price": p(12),
        "volume": u(16, 20),
        "buy_quantity": u(20, 24),
        "sell_quantity": u(24, 28),
        "ohlc": {"open": p(28), "high": p(32), "low": p(36), "close": p(40)},
    }
    close = d["ohlc"]["close"]
    if len(packet) == 184:
        d["last_trade_time"] = _iso(u(44, 48))
        d["oi"] = u(48, 52)
        d["oi_day_high"] = u(52, 56)
        d["oi_day_low"] = u(56, 60)
        d["timestamp"] = _iso(u(60, 64))
    d["change"] = (d["last_price"] - close) * 100 / close if close else 0
    if len(packet) == 184:
        depth: dict[str, list[dict[str, Any]]] = {"buy": [], "sell": []}
        for i, at in enumerate(range(64, 184, 12)):
            depth["sell" if i >= 5 else "buy"].append(
                {"price": p(at + 4), "quantity": u(at, at + 4), "orders": u(at + 8, at + 10, "H")}
            )
        d["depth"] = depth
    return d


@dataclass(eq=False)
class Connection:
    """One ticker WebSocket: its subscriptions and its outgoing queue."""

    user_id: str
    queue: asyncio.Queue[bytes | str] = field(default_factory=lambda: asyncio.Queue(10_000))
    modes: dict[int, str] = field(default_factory=dict)
    dropped: int = 0

    def put(self, message: bytes | str) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1  # a slow client loses ticks, never the simulator


class TickerHub:
    """Every open ticker connection; turns clock ticks and order updates into messages."""

    def __init__(
        self, states: dict[int, MarketState], *, spread_bps: Decimal, max_instruments: int
    ):
        self.states = states
        self.spread_bps = spread_bps
        self.max_instruments = max_instruments
        self.connections: set[Connection] = set()
        self.silenced = False

    def open(self, user_id: str) -> Connection:
        conn = Connection(user_id)
        self.connections.add(conn)
        return conn

    def close(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def handle_text(self, conn: Connection, text: str) -> None:
        """A subscribe / unsubscribe / mode message from the client."""
        try:
            msg = json.loads(text)
            action, value = msg["a"], msg["v"]
        except (ValueError, KeyError, TypeError):
            conn.put(json.dumps({"type": "error", "data": "Invalid message"}))
            return
        if action == "subscribe":
            tokens = [int(t) for t in value]
            new = [t for t in tokens if t not in conn.modes]
            if len(conn.modes) + len(new) > self.max_instruments:
                error = f"Maximum {self.max_instruments} instruments per connection"
                conn.put(json.dumps({"type": "error", "data": error}))
                return
            for token in new:
                conn.modes[token] = MODE_QUOTE
            self._snapshot(conn, tokens)
        elif action == "unsubscribe":
            for token in value:
                conn.modes.pop(int(token), None)
        elif action == "mode":
            mode, tokens = value[0], [int(t) for t in value[1]]
            if mode not in MODES:
                conn.put(json.dumps({"type": "error", "data": f"Invalid mode {mode}"}))
                return
            for token in tokens:
                if token in conn.modes:
                    conn.modes[token] = mode
            self._snapshot(conn, tokens)
        else:
            conn.put(json.dumps({"type": "error", "data": f"Unknown action {action}"}))

    def _snapshot(self, conn: Connection, tokens: list[int]) -> None:
        if self.silenced:
            return
        packets = []
        for token in tokens:
            state = self.states.get(token)
            mode = conn.modes.get(token)
            if state is not None and mode is not None and state.last_price > 0:
                packets.append(pack_packet(state, mode, self.spread_bps))
        if packets:
            conn.put(frame(packets))

    def on_ticks(self, batch: list[tuple[int, Tick]]) -> None:
        if self.silenced or not self.connections:
            return
        tokens = list(dict.fromkeys(token for token, _tick in batch))
        cache: dict[tuple[int, str], bytes] = {}
        for conn in self.connections:
            packets = []
            for token in tokens:
                mode = conn.modes.get(token)
                if mode is None:
                    continue
                key = (token, mode)
                if key not in cache:
                    cache[key] = pack_packet(self.states[token], mode, self.spread_bps)
                packets.append(cache[key])
            if packets:
                conn.put(frame(packets))

    def on_order(self, order: dict[str, Any]) -> None:
        if self.silenced:
            return
        message = json.dumps({"type": "order", "id": "", "data": order})
        for conn in self.connections:
            if conn.user_id == order.get("placed_by"):
                conn.put(message)
