"""The instruments master: Kite's daily instruments dump, looked up in O(1).

The seed downloaded the whole dump on every symbol lookup. Here the dump is parsed once a day
(and at start when stale) into two dictionaries, by `EXCHANGE:TRADINGSYMBOL` and by instrument
token. A symbol that was renamed or delisted gets an error that says so and names the successor
(HDFC -> HDFCBANK, ZOMATO -> ETERNAL); it never silently resolves to a wrong token.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from dalal_shared.errors import NotFoundError, PermanentError


@dataclass(frozen=True)
class Instrument:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    expiry: date | None
    strike: Decimal
    tick_size: Decimal
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


@dataclass(frozen=True)
class SymbolChange:
    """A corporate action after which an old symbol must not be traded under its old name."""

    old: str  # EXCHANGE:SYMBOL
    successor: str | None  # EXCHANGE:SYMBOL, or None when simply delisted
    effective: date
    what: str


# Dated, sourced facts; extend as exchanges announce them.
KNOWN_SYMBOL_CHANGES: tuple[SymbolChange, ...] = (
    SymbolChange(
        "NSE:HDFC",
        "NSE:HDFCBANK",
        date(2023, 7, 13),
        "HDFC Ltd merged into HDFC Bank (effective 2023-07-01; HDFC delisted 2023-07-13)",
    ),
    SymbolChange(
        "NSE:ZOMATO",
        "NSE:ETERNAL",
        date(2025, 3, 20),
        "Zomato Ltd was renamed Eternal Ltd in 2025; it trades as ETERNAL",
    ),
)


class UnknownSymbol(NotFoundError):
    code = "unknown_symbol"


class SymbolChanged(NotFoundError):
    code = "symbol_changed"
    status_code = 410


class BadInstrumentDump(PermanentError):
    code = "bad_instrument_dump"


_COLUMNS = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
    "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)  # fmt: skip


def parse_dump(text: str) -> list[Instrument]:
    """Parse Kite's instruments CSV; a malformed dump is refused, naming the line."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadInstrumentDump(f"instruments dump lacks columns: {', '.join(missing)}")
    out = []
    for line_no, row in enumerate(reader, start=2):
        try:
            out.append(
                Instrument(
                    instrument_token=int(row["instrument_token"]),
                    exchange_token=int(row["exchange_token"]),
                    tradingsymbol=row["tradingsymbol"],
                    name=row["name"],
                    expiry=date.fromisoformat(row["expiry"]) if row["expiry"] else None,
                    strike=Decimal(row["strike"] or "0"),
                    tick_size=Decimal(row["tick_size"] or "0"),
                    lot_size=int(row["lot_size"] or 0),
                    instrument_type=row["instrument_type"],
                    segment=row["segment"],
                    exchange=row["exchange"],
                )
            )
        except (ValueError, InvalidOperation) as exc:
            raise BadInstrumentDump(f"instruments dump line {line_no}: {exc}") from None
    return out


class InstrumentMaster:
    """One day's instruments, indexed by key and by token."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        as_of: date,
        previous_keys: Iterable[str] = (),
        changes: Iterable[SymbolChange] = KNOWN_SYMBOL_CHANGES,
    ):
        self.as_of = as_of
        self._by_key: dict[str, Instrument] = {}
        self._by_token: dict[int, Instrument] = {}
        for inst in instruments:
            self._by_key[inst.key] = inst
            self._by_token[inst.instrument_token] = inst
        self._previous = frozenset(previous_keys) - self._by_key.keys()
        self._changes = {c.old: c for c in changes if c.effective <= as_of}

    def __len__(self) -> int:
        return len(self._by_key)

    def lookup(self, symbol: str, exchange: str = "NSE") -> Instrument:
        key = symbol if ":" in symbol else f"{exchange}:{symbol}"
        key = key.upper()
        change = self._changes.get(key)
        if change is not None:
            successor = f"; use {change.successor}" if change.successor else ""
            raise SymbolChanged(f"{key} is no longer traded: {change.what}{successor}")
        inst = self._by_key.get(key)
        if inst is not None:
            return inst
        if key in self._previous:
            raise SymbolChanged(
                f"{key} was listed in an earlier instruments dump but not in today's "
                f"({self.as_of.isoformat()}): delisted, suspended or renamed"
            )
        raise UnknownSymbol(f"no instrument {key} in the instruments dump of {self.as_of}")

    def all(self) -> list[Instrument]:
        return list(self._by_key.values())

    def by_token(self, token: int) -> Instrument:
        try:
            return self._by_token[token]
        except KeyError:
            raise UnknownSymbol(f"no instrument with token {token}") from None

    def search(self, query: str, limit: int = 20) -> list[Instrument]:
        """Symbols or names containing `query` (case-insensitive), exact symbol first."""
        q = query.strip().upper()
        if not q:
            return []
        hits = [
            inst
            for inst in self._by_key.values()
            if q in inst.tradingsymbol.upper() or q in inst.name.upper()
        ]
        hits.sort(
            key=lambda i: (i.tradingsymbol != q, not i.tradingsymbol.startswith(q), i.tradingsymbol)
        )
        return hits[:limit]
