"""Adapters that feed the live loop what it must know from outside, in the background:

* `restore_safety`: the kill switch and the Kite session from the broker, equity and cash from
  the portfolio (HTTP, `dalal_shared.clients`), at start and then every so often. Until each
  is known, entries are refused (`safety_state_unknown`); an owner that does not answer is
  asked again with a growing pause.
* `follow_shared_clock`: kitesim's clock as the data feed shares it at a Redis key (sim).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dalal_engine.clock import ExchangeClock
from dalal_engine.live import LiveEngine
from dalal_shared.clients import BrokerClient, PortfolioClient
from dalal_shared.errors import DalalError
from dalal_shared.logging import get_logger

log = get_logger(__name__)


async def restore_once(
    live: LiveEngine, broker: BrokerClient, portfolio: PortfolioClient | None
) -> list[str]:
    """Ask every owner once; returns the sources that could not be read."""
    ticket = live.safety.ticket()
    failed: list[str] = []
    kill: tuple[bool, str] | None = None
    session: bool | None = None
    funds: tuple[Decimal, Decimal] | None = None
    try:
        body = await asyncio.to_thread(broker.kill_switch)
        kill = (bool(body["engaged"]), str(body.get("reason") or ""))
    except (DalalError, KeyError, TypeError) as exc:
        failed.append(f"kill_switch: {exc}")
    try:
        session = bool((await asyncio.to_thread(broker.session))["valid"])
    except (DalalError, KeyError, TypeError) as exc:
        failed.append(f"session: {exc}")
    if portfolio is not None:
        try:
            body = await asyncio.to_thread(portfolio.portfolio)
            funds = (Decimal(str(body["equity"])), Decimal(str(body["cash"])))
        except (DalalError, KeyError, TypeError, ArithmeticError) as exc:
            failed.append(f"equity: {exc}")
    live.restore(ticket, kill_switch=kill, session_valid=session, funds=funds)
    return failed


async def restore_safety(
    live: LiveEngine,
    broker: BrokerClient,
    portfolio: PortfolioClient | None,
    *,
    refresh_seconds: float,
) -> None:
    """Forever: read the safety state, retrying quickly while something is unknown, then
    every `refresh_seconds` (the bus events keep it current in between)."""
    pause = 0.25
    announced = False
    while True:
        failed = await restore_once(live, broker, portfolio)
        if failed and not live.safety.complete:
            log.warning("engine.safety_state_unknown", failed=[f[:200] for f in failed])
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        if failed:
            log.warning("engine.safety_refresh_failed", failed=[f[:200] for f in failed])
        elif not announced:
            announced = True
            log.info(
                "engine.safety_state_known",
                kill_switch=live.market.kill_switch,
                session_valid=live.market.session_valid,
            )
        pause = 0.25
        await asyncio.sleep(refresh_seconds)


async def follow_shared_clock(
    clock: ExchangeClock, redis: aioredis.Redis, key: str, *, every_seconds: float = 0.25
) -> None:
    """Read kitesim's clock (an ISO time the feed writes at `key`) into `clock`."""
    while True:
        with contextlib.suppress(RedisError, ValueError, OSError):
            raw: Any = await redis.get(key)
            if raw:
                clock.share(datetime.fromisoformat(raw.decode()))
        await asyncio.sleep(every_seconds)
