"""Keeps today's instruments master: downloaded from Kite once a day (and at start when
stale), with the last download kept in Redis so a restart before login still answers."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Gauge

from dalal_broker.instruments import Instrument, InstrumentMaster
from dalal_broker.kite import KiteGateway
from dalal_shared.errors import TemporaryError
from dalal_shared.timeutil import IST, utcnow

KEY = "broker:instruments:{exchange}"
INSTRUMENTS = Gauge("dalal_broker_instruments", "Instruments in the loaded master")
INSTRUMENTS_AGE = Gauge("dalal_broker_instruments_age_days", "Age of the instruments master")


class InstrumentsUnavailable(TemporaryError):
    code = "instruments_unavailable"


def _from_kite(row: dict[str, Any]) -> Instrument:
    expiry = row.get("expiry")
    return Instrument(
        instrument_token=int(row["instrument_token"]),
        exchange_token=int(row["exchange_token"]),
        tradingsymbol=str(row["tradingsymbol"]),
        name=str(row.get("name") or ""),
        expiry=expiry if isinstance(expiry, date) else None,
        strike=Decimal(str(row.get("strike") or 0)),
        tick_size=Decimal(str(row.get("tick_size") or 0)),
        lot_size=int(row.get("lot_size") or 0),
        instrument_type=str(row.get("instrument_type") or ""),
        segment=str(row.get("segment") or ""),
        exchange=str(row["exchange"]),
    )


def _to_json(inst: Instrument) -> dict[str, Any]:
    return {
        "instrument_token": inst.instrument_token,
        "exchange_token": inst.exchange_token,
        "tradingsymbol": inst.tradingsymbol,
        "name": inst.name,
        "expiry": inst.expiry.isoformat() if inst.expiry else None,
        "strike": str(inst.strike),
        "tick_size": str(inst.tick_size),
        "lot_size": inst.lot_size,
        "instrument_type": inst.instrument_type,
        "segment": inst.segment,
        "exchange": inst.exchange,
    }


def _from_json(d: dict[str, Any]) -> Instrument:
    return Instrument(
        instrument_token=d["instrument_token"],
        exchange_token=d["exchange_token"],
        tradingsymbol=d["tradingsymbol"],
        name=d["name"],
        expiry=date.fromisoformat(d["expiry"]) if d["expiry"] else None,
        strike=Decimal(d["strike"]),
        tick_size=Decimal(d["tick_size"]),
        lot_size=d["lot_size"],
        instrument_type=d["instrument_type"],
        segment=d["segment"],
        exchange=d["exchange"],
    )


def instrument_view(inst: Instrument) -> dict[str, Any]:
    return _to_json(inst)


class InstrumentStore:
    def __init__(self, redis: aioredis.Redis, gateway: KiteGateway, exchange: str = "NSE"):
        self.redis = redis
        self.gateway = gateway
        self.exchange = exchange
        self.master: InstrumentMaster | None = None
        self._previous_keys: list[str] = []

    @staticmethod
    def today() -> date:
        return utcnow().astimezone(IST).date()

    async def refresh(self) -> InstrumentMaster:
        """Download today's dump from Kite (one call) and keep it."""
        rows = await self.gateway.instruments(self.exchange)
        instruments = [_from_kite(r) for r in rows]
        if self.master is not None:
            self._previous_keys = [i.key for i in self._all(self.master)]
        master = InstrumentMaster(
            instruments, as_of=self.today(), previous_keys=self._previous_keys
        )
        await self.redis.set(
            KEY.format(exchange=self.exchange),
            json.dumps(
                {
                    "as_of": master.as_of.isoformat(),
                    "instruments": [_to_json(i) for i in instruments],
                    "previous": self._previous_keys,
                }
            ),
        )
        self._use(master)
        return master

    async def load_cached(self) -> InstrumentMaster | None:
        raw = await self.redis.get(KEY.format(exchange=self.exchange))
        if not raw:
            return None
        data = json.loads(raw)
        self._previous_keys = data.get("previous", [])
        master = InstrumentMaster(
            [_from_json(d) for d in data["instruments"]],
            as_of=date.fromisoformat(data["as_of"]),
            previous_keys=self._previous_keys,
        )
        self._use(master)
        return master

    async def ensure_fresh(self, session_valid: bool) -> None:
        if self.master is None:
            await self.load_cached()
        if session_valid and (self.master is None or self.master.as_of < self.today()):
            await self.refresh()

    def require(self) -> InstrumentMaster:
        if self.master is None:
            raise InstrumentsUnavailable(
                "no instruments master yet: it is downloaded from Kite after the first login"
            )
        return self.master

    def _use(self, master: InstrumentMaster) -> None:
        self.master = master
        INSTRUMENTS.set(len(master))
        INSTRUMENTS_AGE.set((self.today() - master.as_of).days)

    @staticmethod
    def _all(master: InstrumentMaster) -> list[Instrument]:
        return master.all()
