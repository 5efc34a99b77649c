"""The live feed: Kite's ticker spoken over an asyncio WebSocket (no Twisted, so a reconnect is
just another `connect`), ticks to `market.ticks`, bars to `market.bars.<interval>`, a watchdog
on tick age, and REST quotes while the ticker is silent.

One process holds the feed (Redis lease `lease:data-ticker`); others wait. Instruments are
split over at most 3 connections of at most 3,000 each (Kite's limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time as _time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

import websockets
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from dalal_data.bars import BarBuilder, OpenBar
from dalal_data.config import DataSettings
from dalal_data.kite import NoKiteSession
from dalal_data.tickbus import TickRow, TickWriter
from dalal_data.tickerproto import RawTick, decode_frame
from dalal_data.watchdog import Watchdog
from dalal_data.wiring import Core
from dalal_shared.aio import wait_event
from dalal_shared.bus import Publisher
from dalal_shared.calendar import CalendarCoverageError, NseCalendar, nse_calendar
from dalal_shared.errors import PermanentError
from dalal_shared.health import TaskHealth, task_registry
from dalal_shared.ids import new_id
from dalal_shared.lease import Lease
from dalal_shared.logging import get_logger
from dalal_shared.messages import DataStale
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import MARKET_TICKS, SYSTEM_EVENTS
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

TICKS = Counter("dalal_data_ticks_total", "Ticks published to market.ticks", ["source"])
TICK_AGE = Gauge("dalal_data_tick_age_seconds", "Seconds since the last tick", ["feed"])
BARS = Counter("dalal_data_bars_emitted_total", "Bars published", ["interval"])
RECONNECTS = Counter("dalal_data_ticker_reconnects_total", "Ticker reconnections", ["reason"])
STALE = Counter("dalal_data_feed_stale_total", "Times the feed went silent in market hours")
FEED_FAILURES = Counter(
    "dalal_data_feed_failures_total",
    "Times the feed failed as a whole (Redis outage, lease error, ...) and restarted",
)
FEED_BACKOFF_START, FEED_BACKOFF_MAX = 1.0, 30.0
SESSION_POLL_SECONDS = 5.0  # without a Kite session: look again this often
MARKET_OPEN = Gauge(
    "dalal_data_market_open",
    "1 while an NSE session is open per the calendar, on the feed's exchange clock",
)
FEED = "kite-ticker"


class TooManyInstruments(PermanentError):
    code = "too_many_instruments"


def market_open(calendar: NseCalendar, now: datetime) -> bool:
    """An NSE session (regular, special or Muhurat) is open at `now` (aware)."""
    try:
        return calendar.session_at(now) is not None
    except CalendarCoverageError:
        return False


def partition(tokens: list[int], per_connection: int, connections: int) -> list[list[int]]:
    if len(tokens) > per_connection * connections:
        raise TooManyInstruments(
            f"{len(tokens)} instruments exceed {connections} connections x {per_connection}"
        )
    return [tokens[i : i + per_connection] for i in range(0, len(tokens), per_connection)]


def ws_url(settings: DataSettings, access_token: str) -> str:
    base = settings.feed_ws_url
    if base is None:
        u = urlparse(settings.kite_root_url)
        if u.hostname == "api.kite.trade":
            base = "wss://ws.kite.trade"
        else:
            base = urlunparse(u._replace(scheme="wss" if u.scheme == "https" else "ws"))
    query = urlencode({"api_key": settings.kite_api_key, "access_token": access_token})
    return f"{base.rstrip('/')}/?{query}"


class Feed:
    def __init__(
        self,
        settings: DataSettings,
        publisher: Publisher,
        runtime_redis: Any,
        core: Core,
        symbols: list[tuple[str, str]],
    ):
        self.settings = settings
        self.publisher = publisher
        self.ticks = TickWriter(
            publisher.redis, stream=MARKET_TICKS, source=publisher.source, maxlen=publisher.maxlen
        )
        self.redis = runtime_redis
        self.core = core
        self.symbols = symbols
        calendar = nse_calendar()
        always = settings.feed_watch_always
        self.watchdog = Watchdog(
            settings.feed_stale_seconds,
            lambda now: always or calendar.session_at(now, assume_regular=True) is not None,
        )
        self.builder = BarBuilder()
        self.lease = Lease(runtime_redis, "data-ticker", ttl_seconds=settings.feed_lease_seconds)
        self.names: dict[int, tuple[str, str]] = {}
        self.connections: dict[int, Any] = {}
        self.reconnects = 0
        self.holding = False
        self.fallback_polls = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._kick = asyncio.Event()
        self._market_ref: tuple[datetime, float] | None = None  # (exchange ts, monotonic)
        self._last_delivery = _time.monotonic()  # the last tick published, from any source
        self.lease_ok = True  # the last lease check answered (False: Redis unreachable)
        self.last_error: str | None = None
        self.waiting_for_session = False
        self.health: TaskHealth | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(), name="feed")]

    async def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a task stuck on a socket must not hang the shutdown
            done, stuck = await asyncio.wait(self._tasks, timeout=15)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a task that failed was logged when it did
            if stuck:
                log.warning("feed.stop_timeout", tasks=len(stuck))
        if self.holding:
            await self.lease.release()

    def stale(self, now: datetime) -> bool:
        """The feed is not delivering fresh ticks when it should: this process is (or cannot
        tell whether it is) the holder, and in watched hours the last tick is older than the
        stale limit or no ticker connection is up. A replica that waits while another holds
        the lease is not stale."""
        if not self.watchdog.market_open(now):
            return False
        if self.waiting_for_session:
            return True  # no session, no ticks
        if not self.holding and self.lease_ok:
            return False
        if self.watchdog.stale or not self.connections:
            return True
        return self.watchdog.age_seconds(now) >= self.settings.feed_stale_seconds

    def status(self) -> dict[str, Any]:
        now = utcnow()
        return {
            "holder": self.holding,
            "connections": len(self.connections),
            "instruments": len(self.names),
            "reconnects": self.reconnects,
            "stale": self.stale(now),
            "last_error": self.last_error,
            "waiting_for_session": self.waiting_for_session,
            "stale_episodes": self.watchdog.episodes,
            "tick_age_seconds": self.watchdog.age_seconds(now),
            "fallback_polls": self.fallback_polls,
            "market_open": market_open(nse_calendar(), self.market_now()),
            "market_now": self.market_now().isoformat(),
        }

    # ------------------------------------------------------------------ supervision
    async def _supervise(self) -> None:
        """Hold the lease and run the connections and the watchdog while it is held; survive
        anything (a Redis outage, Kite's ticker refusing us, a bug) with a back-off, so the feed
        comes back by itself. Reports to the task registry as `feed` (/readyz)."""
        health = self.health = task_registry().register(
            "feed", stale_after_seconds=max(30.0, 3 * self.settings.feed_lease_seconds)
        )
        backoff = FEED_BACKOFF_START
        try:
            while not self._stop.is_set():
                try:
                    if await self._hold(health):
                        backoff = FEED_BACKOFF_START
                except asyncio.CancelledError:
                    raise
                except NoKiteSession as exc:  # nobody logged in yet: waiting is not a fault
                    self.holding = False
                    self.waiting_for_session = True
                    if self.last_error != str(exc):
                        log.info("feed.waiting_for_session", error=str(exc)[:300])
                    self.last_error = str(exc)
                    health.beat()
                    with contextlib.suppress(Exception):
                        await self.lease.release()  # a replica with a session may take it
                    await self._wait(SESSION_POLL_SECONDS)
                    backoff = FEED_BACKOFF_START
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"[:300]
                    self.last_error = error
                    FEED_FAILURES.inc()
                    log.error("feed.failed", error=error, retry_in_seconds=backoff)
                    health.backoff(error)
                    self.holding = False
                    await self._wait(backoff)
                    backoff = min(backoff * 2, FEED_BACKOFF_MAX)
        finally:
            self.holding = False
            health.close()

    async def _acquire(self) -> bool:
        renew = self.settings.feed_lease_seconds / 3
        try:  # bounded: past the TTL an answer means nothing
            held = await asyncio.wait_for(self.lease.acquire(), timeout=renew)
        except Exception:
            self.lease_ok = False
            raise
        self.lease_ok = True
        return held

    async def _hold(self, health: TaskHealth) -> bool:
        """One spell as the feed holder (or one look at the lease). True when it ended
        normally: the lease went to another process, or the feed stops."""
        renew = self.settings.feed_lease_seconds / 3
        if not await self._acquire():
            self.holding = False
            health.beat()
            await self._wait(renew)
            return True
        self.holding = True
        await self._resolve()
        self.waiting_for_session = False
        groups = partition(
            sorted(self.names),
            self.settings.feed_max_instruments_per_connection,
            self.settings.feed_max_connections,
        )
        self.watchdog.start(utcnow())
        workers = [asyncio.create_task(self._connection(i, g)) for i, g in enumerate(groups)]
        workers.append(asyncio.create_task(self._watch()))
        try:
            while not self._stop.is_set():
                if not await self._acquire():
                    log.warning("feed.lease_lost")
                    return True
                for w in workers:
                    if w.done() and not w.cancelled() and w.exception() is not None:
                        raise w.exception()  # type: ignore[misc]
                health.beat()
                health.problem(self._silence())
                self.last_error = None
                await self._wait(renew)
            return True
        finally:
            self.holding = False
            for w in workers:
                w.cancel()
            for w in workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w
            self.connections.clear()

    def _silence(self) -> str | None:
        """The feed delivers nothing in market hours: no ticker tick and no fallback quote for
        longer than the stale limit (a reason for /readyz to be red)."""
        now = utcnow()
        if not self.watchdog.stale:
            return None
        quiet = _time.monotonic() - self._last_delivery
        if quiet < self.settings.feed_stale_seconds:
            return None  # the quote fallback delivers
        return f"no ticks for {self.watchdog.age_seconds(now):.0f} s in market hours"

    async def _wait(self, seconds: float) -> None:
        await wait_event(self._stop, seconds)

    async def _resolve(self) -> None:
        for exchange, symbol in self.symbols:
            inst = await self.core.instruments.lookup(exchange, symbol)
            self.names[inst.instrument_token] = (exchange, symbol)

    # ------------------------------------------------------------------ connections
    async def _connection(self, index: int, tokens: list[int]) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                token = await self.core.gateway.token_source()
                async with websockets.connect(
                    ws_url(self.settings, token), ping_interval=None, open_timeout=10
                ) as ws:
                    await ws.send(json.dumps({"a": "subscribe", "v": tokens}))
                    await ws.send(json.dumps({"a": "mode", "v": ["full", tokens]}))
                    self.connections[index] = ws
                    backoff = 0.2
                    log.info("feed.connected", connection=index, instruments=len(tokens))
                    async for message in ws:
                        if isinstance(message, bytes) and len(message) > 1:
                            await self.on_raw_ticks(decode_frame(message))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("feed.connection_error", connection=index, error=str(exc)[:200])
            finally:
                self.connections.pop(index, None)
            if self._stop.is_set():
                break
            self.reconnects += 1
            RECONNECTS.labels("closed").inc()
            await self._wait(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _reconnect_all(self, reason: str) -> None:
        for ws in list(self.connections.values()):
            RECONNECTS.labels(reason).inc()
            with contextlib.suppress(Exception):
                await ws.close()

    # ------------------------------------------------------------------ ticks and bars
    def market_now(self) -> datetime:
        """The exchange clock: the last exchange timestamp plus the time since it arrived."""
        if self._market_ref is None:
            return utcnow()
        ts, mono = self._market_ref
        return ts + timedelta(seconds=_time.monotonic() - mono)

    async def on_raw_ticks(self, raws: list[RawTick], *, source: str = "ticker") -> None:
        now = utcnow()
        rows: list[TickRow] = []
        ids: list[str] = []  # each tick's envelope id: the corr of the bars it closes
        bars: list[OpenBar] = []
        names = self.names
        on_tick = self.builder.on_tick
        for raw in raws:
            name = names.get(raw.instrument_token)
            if name is None or raw.last_price <= 0:
                continue
            exchange, symbol = name
            ts = raw.exchange_ts or self.market_now()
            if raw.exchange_ts is not None and (
                self._market_ref is None or ts >= self._market_ref[0]
            ):
                self._market_ref = (ts, _time.monotonic())
            rows.append((raw.instrument_token, exchange, symbol, raw.last_price, raw.volume, ts))
            tick_id = new_id()
            ids.append(tick_id)
            if raw.exchange_ts is not None or self._market_ref is not None:
                # a tick without exchange time before any with one (a snapshot) has no bar
                bars.extend(on_tick(symbol, raw.last_price, raw.volume, ts, tick_id))
        if not rows:
            return
        if source == "ticker":
            self.watchdog.on_tick(now)
        # the ticks and the bars they close in one call, the ticks first
        await self.ticks.publish(rows, ids, self._bar_rows(bars))
        self._last_delivery = _time.monotonic()
        TICKS.labels(source).inc(len(rows))
        if bars:
            self._count_bars(bars)

    async def publish_bars(self, bars: list[OpenBar]) -> None:
        """The bars some ticks closed, in one round trip (at a minute's close: one per symbol
        and interval), the shortest interval first, each with the corr of its closing tick."""
        if bars:
            await self.ticks.publish((), (), self._bar_rows(bars))
            self._count_bars(bars)

    def _bar_rows(self, bars: list[OpenBar]) -> list[tuple[str, OpenBar]]:
        """Bars with their exchange, the shortest interval first (stable)."""
        if not bars:
            return []
        exchange_of = {sym: ex for ex, sym in self.names.values()}
        order = {interval: n for n, interval in enumerate(self.builder.intervals)}
        ordered = sorted(bars, key=lambda b: order.get(b.interval, len(order)))
        return [(exchange_of.get(b.symbol, "NSE"), b) for b in ordered]

    @staticmethod
    def _count_bars(bars: list[OpenBar]) -> None:
        counts: dict[str, int] = {}
        for b in bars:
            counts[b.interval] = counts.get(b.interval, 0) + 1
        for interval, n in counts.items():
            BARS.labels(interval).inc(n)

    # ------------------------------------------------------------------ watchdog
    async def _watch(self) -> None:
        period = min(0.25, self.settings.feed_stale_seconds / 4)
        next_poll = 0.0
        last_kick = 0.0
        while not self._stop.is_set():
            try:
                next_poll, last_kick = await self._watch_once(next_poll, last_kick)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. Redis down: the watchdog keeps watching
                log.warning("feed.watch_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await self._wait(period)

    async def _watch_once(self, next_poll: float, last_kick: float) -> tuple[float, float]:
        now = utcnow()
        TICK_AGE.labels(FEED).set(self.watchdog.age_seconds(now))
        await self.publish_bars(self.builder.close_due(self.market_now()))
        await self._share_clock()
        if self.watchdog.check(now):
            STALE.inc()
            age = self.watchdog.age_seconds(now)
            log.warning("feed.stale", age_seconds=round(age, 2))
            await self.publisher.publish(
                SYSTEM_EVENTS,
                DataStale(feed=FEED, last_tick_at=self.watchdog.last_tick_at, age_seconds=age),
            )
            last_kick = _time.monotonic()
            await self._reconnect_all("stale")
        elif (
            self.watchdog.due_again(now)
            and _time.monotonic() - last_kick >= self.settings.feed_stale_seconds
        ):
            last_kick = _time.monotonic()
            await self._reconnect_all("stale")
        if (
            self.watchdog.stale
            and self.settings.feed_quote_fallback
            and _time.monotonic() >= next_poll
        ):
            next_poll = _time.monotonic() + 1.0  # Kite's quote limit: 1 request/s
            await self._poll_quotes()
        return next_poll, last_kick

    async def _share_clock(self) -> None:
        """Simulation: hand the exchange clock to the scheduler (once ticks have set it), so
        timed jobs such as the end-of-day signal follow kitesim's days, not the wall clock."""
        key = self.settings.feed_clock_redis_key
        if key is None or self._market_ref is None:
            return
        with contextlib.suppress(RedisError):
            await self.redis.set(key, self.market_now().isoformat(), ex=300)

    async def _poll_quotes(self) -> None:
        keys = [f"{ex}:{sym}" for ex, sym in self.names.values()][:500]
        if not keys:
            return
        try:
            quotes = await self.core.gateway.quote(keys)
        except Exception as exc:
            log.warning("feed.quote_fallback_failed", error=str(exc)[:200])
            return
        self.fallback_polls += 1
        raws = []
        for q in quotes.values():
            ts = q.get("last_trade_time") or q.get("timestamp")
            if isinstance(ts, datetime) and ts.tzinfo is None:
                ts = None  # the client parses Kite's IST stamps without a zone: use our clock
            raws.append(
                RawTick(
                    int(q["instrument_token"]),
                    Decimal(str(q["last_price"])),
                    int(q.get("volume", 0) or 0),
                    ts,
                )
            )
        await self.on_raw_ticks(raws, source="quote")


def parse_symbols(raw: str) -> list[tuple[str, str]]:
    out = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        exchange, _, symbol = item.partition(":") if ":" in item else ("NSE", "", item)
        out.append((exchange.upper(), symbol))
    return out


def build_feed(settings: DataSettings, runtime: ServiceRuntime, core: Core) -> Feed:
    return Feed(
        settings, runtime.publisher, runtime.redis, core, parse_symbols(settings.feed_symbols)
    )
