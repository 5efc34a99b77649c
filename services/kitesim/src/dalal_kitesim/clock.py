"""The market clock: simulated time that replays real bars as ticks, session by session.

Time is simulated and UTC inside. Each trading day of the NSE calendar, every replayed instrument
turns its bars of that day (the finest interval its data root has: minute, 3/5/10/15/30/60-minute
or day, `BarStore.replay_day`) into ticks along `dalal_shared.fills.tick_path`.
`run_until(t)` delivers, in time order, every tick and
every session event (open, MIS square-off at 15:20, close) up to `t`. `advance(seconds)` moves
by *session* seconds: the night between a close and the next open costs nothing, so a 60 s real
session replays 22,500 s of market time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from dalal_kitesim.marketdata import BarStore, Instrument
from dalal_shared.calendar import NseCalendar, Session
from dalal_shared.fills import Bar, Tick, round_to_tick, tick_path
from dalal_shared.intervals import INTERVAL_MINUTES
from dalal_shared.logging import get_logger

log = get_logger(__name__)


@dataclass
class MarketState:
    """What a quote of one instrument shows now."""

    instrument: Instrument
    prev_close: Decimal = Decimal(0)
    open: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    low: Decimal = Decimal(0)
    last_price: Decimal = Decimal(0)
    last_quantity: int = 0
    volume: int = 0
    turnover: Decimal = Decimal(0)
    last_trade_time: datetime | None = None
    timestamp: datetime | None = None
    bar_start: datetime | None = None
    bar_volume: int = 0
    # the replayed bar in progress, as far as its ticks have gone (partial candles)
    bar_open: Decimal = Decimal(0)
    bar_high: Decimal = Decimal(0)
    bar_low: Decimal = Decimal(0)
    bar_traded: int = 0
    ticks_today: int = 0

    @property
    def average_price(self) -> Decimal:
        if self.volume <= 0:
            return self.last_price
        return (self.turnover / self.volume).quantize(Decimal("0.01"))

    def new_day(self) -> None:
        if self.last_price:
            self.prev_close = self.last_price
        self.open = self.high = self.low = Decimal(0)
        self.volume = 0
        self.turnover = Decimal(0)
        self.ticks_today = 0
        self.last_quantity = 0

    def apply(self, tick: Tick) -> None:
        if self.ticks_today == 0:
            self.open = self.high = self.low = tick.price
        self.high = max(self.high, tick.price)
        self.low = min(self.low, tick.price)
        self.last_price = tick.price
        self.last_quantity = tick.volume
        self.volume += tick.volume
        self.turnover += tick.price * tick.volume
        self.last_trade_time = tick.ts
        self.timestamp = tick.ts
        if tick.bar_start != self.bar_start or self.ticks_today == 0:
            self.bar_open = self.bar_high = self.bar_low = tick.price
            self.bar_traded = 0
        self.bar_high = max(self.bar_high, tick.price)
        self.bar_low = min(self.bar_low, tick.price)
        self.bar_traded += tick.volume
        self.bar_start = tick.bar_start
        self.bar_volume = tick.bar_volume
        self.ticks_today += 1


TickListener = Callable[[list[tuple[int, Tick]]], None]
EventListener = Callable[[datetime], None]


class _DayTicks:
    """One instrument's ticks of one session, a bar's tick path at a time."""

    __slots__ = ("_bar", "_bars", "_duration", "_key", "_n", "_noise", "_open", "_pos", "_seed",
                 "_size", "_ticks")  # fmt: skip

    def __init__(
        self,
        *,
        bars: list[Bar],
        duration: timedelta,
        session_open: datetime,
        ticks_per_bar: int,
        seed: int,
        key: str,
        tick_size: Decimal,
        noise_bps: Decimal = Decimal(0),
    ):
        self._bars, self._duration, self._open = bars, duration, session_open
        self._noise = noise_bps
        self._n, self._seed, self._key, self._size = ticks_per_bar, seed, key, tick_size
        self._bar = 0
        self._ticks: list[Tick] = []
        self._pos = 0

    def next(self) -> Tick | None:
        while self._pos >= len(self._ticks):
            if self._bar >= len(self._bars):
                return None
            bar = self._bars[self._bar]
            self._bar += 1
            # a daily bar spans the session from its open
            start = bar.start if self._duration.total_seconds() < 22500 else self._open
            bar = Bar(start, bar.open, bar.high, bar.low, bar.close, bar.volume)
            self._ticks = tick_path(
                bar, self._duration, seed=self._seed, key=self._key,
                ticks_per_bar=self._n, tick_size=self._size,
            )  # fmt: skip
            if self._noise:
                self._ticks = _jitter(
                    self._ticks, bar, self._noise, self._size, self._seed, self._key
                )
            self._pos = 0
        tick = self._ticks[self._pos]
        self._pos += 1
        return tick


def _jitter(
    ticks: list[Tick], bar: Bar, noise_bps: Decimal, size: Decimal, seed: int, key: str
) -> list[Tick]:
    """The path's inner ticks moved by up to `noise_bps` either way (seeded, on the tick grid,
    inside the bar's range; open and close kept): a load test's prices that turn often."""
    rng = random.Random(f"{seed}:{key}:{bar.start.isoformat()}:noise")
    out = [ticks[0]]
    for tick in ticks[1:-1]:
        move = tick.price * noise_bps / 10_000 * Decimal(rng.uniform(-1, 1))
        price = round_to_tick(tick.price + move, size)
        out.append(replace(tick, price=min(max(price, bar.low), bar.high)))
    if len(ticks) > 1:
        out.append(ticks[-1])
    return out


@dataclass
class ClockListeners:
    ticks: list[TickListener] = field(default_factory=list)
    session_open: list[EventListener] = field(default_factory=list)
    square_off: list[EventListener] = field(default_factory=list)
    session_close: list[EventListener] = field(default_factory=list)


class MarketClock:
    """Simulated time and the replay of bars as ticks."""

    def __init__(
        self,
        *,
        calendar: NseCalendar,
        bars: BarStore,
        instruments: list[Instrument],
        start_date: date,
        seed: int,
        tick_interval_seconds: int = 60,
        tick_noise_bps: Decimal = Decimal(0),
    ):
        self.calendar = calendar
        self.bars = bars
        self.seed = seed
        self.tick_interval_seconds = tick_interval_seconds
        self.tick_noise_bps = tick_noise_bps
        self.states: dict[int, MarketState] = {
            i.instrument_token: MarketState(i) for i in instruments
        }
        self.listeners = ClockListeners()
        day = (
            start_date
            if calendar.is_trading_day(start_date)
            else calendar.next_trading_day(start_date)
        )
        self.day = day
        self.session: Session = self._session(day)
        self.now = self.session.open
        self._queue: list[tuple[datetime, int, int, Tick, _DayTicks]] = []
        self._square_off_done = False
        self._closed = False
        self._seq = 0
        self._seed_prev_closes(day)
        # the last day the data has bars for (any replayed instrument): past it the clock
        # still runs sessions, but with no ticks; `replay_exhausted` says so
        self.last_data_day: date | None = max(
            (
                daily[-1].start.date()
                for s in self.states.values()
                if (daily := self.bars.bars(s.instrument.tradingsymbol, "day"))
            ),
            default=None,
        )
        self._said_exhausted = False
        self._load_day(day)

    # -- set-up -------------------------------------------------------------------------------
    def _session(self, day: date) -> Session:
        session = self.calendar.session(day)
        if session is None:
            raise ValueError(f"{day} has no session")
        return session

    def _seed_prev_closes(self, day: date) -> None:
        for state in self.states.values():
            daily = self.bars.bars(state.instrument.tradingsymbol, "day") or []
            before = [b for b in daily if b.start.date() < day]
            if before:
                state.prev_close = before[-1].close
                state.last_price = before[-1].close

    def _bars_of_day(self, symbol: str, day: date) -> tuple[list[Bar], timedelta]:
        found = self.bars.replay_day(symbol, day)
        if found is None:
            return [], timedelta(0)
        interval, todays = found
        if interval == "day":
            return todays, self.session.close - self.session.open
        return todays, timedelta(minutes=INTERVAL_MINUTES[interval])

    def _load_day(self, day: date) -> None:
        """Queue the first tick of each instrument's day; the rest of a bar's ticks are built
        when the bar starts (`_DayTicks`), so opening a day costs one tick path per instrument,
        not a whole session of them at once on the event loop."""
        self._queue = []
        if self.replay_exhausted and not self._said_exhausted:
            self._said_exhausted = True
            log.warning(
                "kitesim.replay_exhausted",
                day=day.isoformat(),
                last_data_day=str(self.last_data_day),
                hint="no ticks from here on; replay again from the start date: stop, delete "
                "the state file (and the stack's var directory), start again",
            )
        for token, state in self.states.items():
            state.new_day()
            bars, duration = self._bars_of_day(state.instrument.tradingsymbol, day)
            if not bars:
                continue
            feed = _DayTicks(
                bars=bars,
                duration=duration,
                session_open=self.session.open,
                ticks_per_bar=max(4, int(duration.total_seconds() // self.tick_interval_seconds)),
                seed=self.seed,
                key=state.instrument.tradingsymbol,
                tick_size=state.instrument.tick_size or Decimal("0.05"),
                noise_bps=self.tick_noise_bps,
            )
            self._push(token, feed)
        heapq.heapify(self._queue)

    def _push(self, token: int, feed: _DayTicks) -> None:
        tick = feed.next()
        if tick is not None:
            self._seq += 1
            heapq.heappush(self._queue, (tick.ts, self._seq, token, tick, feed))

    # -- state --------------------------------------------------------------------------------
    @property
    def replay_exhausted(self) -> bool:
        """The clock has run past the last day of the replayed data: sessions without ticks."""
        return self.last_data_day is not None and self.day > self.last_data_day

    @property
    def in_session(self) -> bool:
        return not self._closed and self.session.open <= self.now < self.session.close

    @property
    def after_square_off(self) -> bool:
        return self._square_off_done

    @property
    def closed(self) -> bool:
        """Today's session has closed (the next event is the next open)."""
        return self._closed

    def restore(
        self,
        *,
        day: date,
        now: datetime,
        square_off_done: bool,
        closed: bool,
        prev_closes: dict[int, Decimal],
    ) -> None:
        """Stand where a saved clock stood (state.py): the day's ticks up to `now` are replayed
        into the quotes silently (the tick paths are seeded, so they are the ones it saw);
        nothing is told to listeners, which already acted on them before the restart."""
        self.day = day
        self.session = self._session(day)
        for token, state in self.states.items():
            if token in prev_closes:
                state.last_price = prev_closes[token]
        self._load_day(day)
        for token, state in self.states.items():
            if token in prev_closes:
                state.prev_close = prev_closes[token]
        while self._queue and self._queue[0][0] <= now:
            _ts, _seq, token, tick, feed = heapq.heappop(self._queue)
            self.states[token].apply(tick)
            self._push(token, feed)
        self.now = now
        self._square_off_done = square_off_done
        self._closed = closed
        if closed:
            self._queue = []

    def start(self) -> None:
        """Fire the first session's open (call once listeners are registered)."""
        for listener in self.listeners.session_open:
            listener(self.now)

    def state(self, token: int) -> MarketState | None:
        return self.states.get(token)

    # -- moving time --------------------------------------------------------------------------
    def run_until(self, target: datetime) -> int:
        """Deliver every tick and session event up to `target`; return the ticks delivered."""
        delivered = 0
        while True:
            next_tick = self._queue[0][0] if self._queue else None
            square = None if self._square_off_done else self.session.mis_square_off
            close = None if self._closed else self.session.close
            candidates = [t for t in (next_tick, square, close) if t is not None]
            if not candidates:
                # closed: the next event is the next session's open
                next_open = self._session(self.calendar.next_trading_day(self.day)).open
                if next_open > target:
                    break
                self._open_next_day()
                continue
            when = min(candidates)
            if when > target:
                break
            if next_tick is not None and next_tick == when and (close is None or when < close):
                batch: list[tuple[int, Tick]] = []
                while self._queue and self._queue[0][0] == when:
                    _ts, _seq, token, tick, feed = heapq.heappop(self._queue)
                    self.states[token].apply(tick)
                    batch.append((token, tick))
                    self._push(token, feed)
                self.now = when.astimezone(UTC)
                delivered += len(batch)
                for listener in self.listeners.ticks:
                    listener(batch)
            elif square is not None and when == square:
                self.now = when.astimezone(UTC)
                self._square_off_done = True
                for on_square_off in self.listeners.square_off:
                    on_square_off(when)
            else:
                self.now = when.astimezone(UTC)
                self._closed = True
                self._queue = []
                for on_close in self.listeners.session_close:
                    on_close(when)
        if target > self.now:
            self.now = target.astimezone(UTC)
        return delivered

    def _open_next_day(self) -> None:
        day = self.calendar.next_trading_day(self.day)
        self.day = day
        self.session = self._session(day)
        self.now = self.session.open
        self._square_off_done = False
        self._closed = False
        self._load_day(day)
        for listener in self.listeners.session_open:
            listener(self.now)

    def advance(self, session_seconds: float) -> int:
        """Move by `session_seconds` of market time, skipping nights and holidays."""
        budget = timedelta(seconds=session_seconds)
        delivered = 0
        while budget > timedelta(0):
            if self._closed:
                self._open_next_day()
                continue
            remaining = self.session.close - self.now
            if budget < remaining:
                delivered += self.run_until(self.now + budget)
                break
            delivered += self.run_until(self.session.close)
            budget -= remaining
        return delivered

    def advance_ticks(self, count: int) -> int:
        """Move to the time of the `count`-th next tick timestamp (across sessions)."""
        delivered = 0
        for _ in range(count):
            guard = 0
            while not self._queue:
                if not self._closed:
                    self.run_until(self.session.close)
                self._open_next_day()
                guard += 1
                if guard > 30:
                    return delivered
            delivered += self.run_until(self._queue[0][0])
        return delivered
