"""Kite's ticker wire format, decoded (plain Python; the WebSocket lives in feed.py).

A binary frame: a 2-byte packet count, then per packet a 2-byte length and the packet, all
big-endian; a 1-byte frame is a heartbeat. Packets by length: ltp 8, index quote 28, index full
32, quote 44, full 184. Prices are paise (1/100 rupee) on NSE/BSE equities and indices. Only
full packets carry the exchange timestamp (epoch seconds); the caller stamps the others with
the receive time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

INDICES_SEGMENT = 9


@dataclass(frozen=True, slots=True)
class RawTick:
    instrument_token: int
    last_price: Decimal
    volume: int  # traded today so far (0 for indices and ltp packets)
    exchange_ts: datetime | None


def _price(paise: int) -> Decimal:
    return Decimal(paise) / 100


def split_frame(data: bytes) -> list[bytes]:
    """The packets of one binary frame; [] for a heartbeat."""
    if len(data) < 2:
        return []
    (count,) = struct.unpack_from(">H", data, 0)
    out, pos = [], 2
    for _ in range(count):
        (length,) = struct.unpack_from(">H", data, pos)
        out.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return out


def _ts(epoch: int) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None


def decode_packet(packet: bytes) -> RawTick | None:
    n = len(packet)
    if n < 8:
        return None
    token, ltp = struct.unpack_from(">II", packet, 0)
    if n == 8:
        return RawTick(token, _price(ltp), 0, None)
    if token & 0xFF == INDICES_SEGMENT:
        ts = _ts(struct.unpack_from(">I", packet, 28)[0]) if n >= 32 else None
        return RawTick(token, _price(ltp), 0, ts)
    (volume,) = struct.unpack_from(">I", packet, 16)
    ts = _ts(struct.unpack_from(">I", packet, 60)[0]) if n >= 64 else None
    return RawTick(token, _price(ltp), volume, ts)


def decode_frame(data: bytes) -> list[RawTick]:
    return [t for p in split_frame(data) if (t := decode_packet(p)) is not None]
