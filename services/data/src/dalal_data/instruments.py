"""Instrument tokens from Kite's daily instruments dump: fetched once a day per exchange and
kept on disk, never downloaded per lookup (the seed's mistake)."""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dalal_shared.errors import NotFoundError
from dalal_shared.timeutil import IST, utcnow


class UnknownSymbol(NotFoundError):
    code = "unknown_symbol"


@dataclass(frozen=True, slots=True)
class Instrument:
    instrument_token: int
    exchange: str
    tradingsymbol: str
    segment: str

    @property
    def is_index(self) -> bool:
        return self.segment == "INDICES"


Fetch = Callable[[str], Awaitable[list[dict[str, Any]]]]


class InstrumentMaster:
    """Symbol -> instrument per exchange, from a dump no older than today (IST)."""

    FIELDS = ("instrument_token", "exchange", "tradingsymbol", "segment")

    def __init__(self, root: Path, fetch: Fetch, *, today: Callable[[], date] | None = None):
        self.root = Path(root) / "_instruments"
        self.fetch = fetch
        self.today = today or (lambda: utcnow().astimezone(IST).date())
        self._by_exchange: dict[str, tuple[date, dict[str, Instrument], dict[int, Instrument]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _path(self, exchange: str, day: date) -> Path:
        return self.root / f"{exchange}-{day.isoformat()}.csv"

    async def refresh(self, exchange: str) -> int:
        """Download today's dump of `exchange` (the daily job); returns its size."""
        rows = await self.fetch(exchange)
        day = self.today()
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(exchange, day)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.FIELDS)
            for row in rows:
                writer.writerow([row[f] for f in self.FIELDS])
        os.replace(tmp, path)
        for old in self.root.glob(f"{exchange}-*.csv"):
            if old != path:
                old.unlink(missing_ok=True)
        self._load(exchange, day)
        return len(rows)

    def _load(self, exchange: str, day: date) -> None:
        by_symbol: dict[str, Instrument] = {}
        by_token: dict[int, Instrument] = {}
        with self._path(exchange, day).open(newline="") as fh:
            for row in csv.DictReader(fh):
                inst = Instrument(
                    int(row["instrument_token"]),
                    row["exchange"],
                    row["tradingsymbol"],
                    row["segment"],
                )
                by_symbol[inst.tradingsymbol] = inst
                by_token[inst.instrument_token] = inst
        self._by_exchange[exchange] = (day, by_symbol, by_token)

    async def _ensure(self, exchange: str) -> tuple[dict[str, Instrument], dict[int, Instrument]]:
        day = self.today()
        held = self._by_exchange.get(exchange)
        if held is not None and held[0] == day:
            return held[1], held[2]
        lock = self._locks.setdefault(exchange, asyncio.Lock())
        async with lock:
            held = self._by_exchange.get(exchange)
            if held is None or held[0] != day:
                if self._path(exchange, day).exists():
                    self._load(exchange, day)
                else:
                    await self.refresh(exchange)
        _day, by_symbol, by_token = self._by_exchange[exchange]
        return by_symbol, by_token

    async def lookup(self, exchange: str, symbol: str) -> Instrument:
        by_symbol, _ = await self._ensure(exchange)
        inst = by_symbol.get(symbol)
        if inst is None:
            raise UnknownSymbol(f"{exchange}:{symbol} is not in today's instruments list")
        return inst

    async def by_token(self, exchange: str, token: int) -> Instrument | None:
        _, by_token = await self._ensure(exchange)
        return by_token.get(token)

    async def symbols(self, exchange: str) -> list[str]:
        by_symbol, _ = await self._ensure(exchange)
        return sorted(by_symbol)
