"""The engine's bars come over the data service's candles API (a real data service over a real
kitesim), never from its files: a fresh live loop's first bar is decided on the same history
the backtester uses, with no candle that was still forming (a data service that does not
answer leaves it warming up from live bars, without failing); a backtest job on the worker
reads the same bars as one over kitesim's own CSV files and makes the same trades."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from engine_fixtures import KNOWN
from engine_servers import Served, data_service, kitesim

from dalal_engine.backtest_jobs import BacktestRequest, run
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_engine.warmup import from_data_service
from dalal_shared.clients import DataClient
from dalal_shared.messages import Bar
from dalal_shared.testing import free_port
from dalal_shared.timeutil import IST

CONFIG = """
name: ref
strategy: sma_cross
universe: [INFY]
params: {fast_bars: 5, slow_bars: 20}
risk: {enforce_market_hours: false}
"""
KITESIM_INFY = (
    Path(__file__).parents[2] / "kitesim" / "src" / "dalal_kitesim" / "data" / "nse" / "day"
) / "INFY.csv"
LIVE_DAY = date(2024, 6, 3)


@pytest.fixture(scope="module")
def data_url(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sim = kitesim(kitesim_history_after_now=True)
    data: Served | None = None
    try:
        data = data_service(sim, redis_server_url, tmp_path_factory.mktemp("cache"))
        yield data.root
    finally:
        if data is not None:
            data.stop()
        sim.stop()


def kitesim_days() -> list[tuple[date, Decimal]]:
    with KITESIM_INFY.open() as fh:
        return [(date.fromisoformat(r["date"]), Decimal(r["close"])) for r in csv.DictReader(fh)]


def live_bar() -> Bar:
    [(day, close)] = [(d, c) for d, c in kitesim_days() if d == LIVE_DAY]
    return Bar(
        symbol="INFY",
        interval="day",
        start=datetime.combine(day, time(0), tzinfo=IST),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1000,
    )


def engine(tmp_path: Path, url: str) -> LiveEngine:
    clock_at = datetime.combine(LIVE_DAY, time(15, 35), tzinfo=IST)
    live = LiveEngine(
        load_text(CONFIG),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
        warmup=from_data_service(DataClient(url), lambda: clock_at, bars=60),
    )
    live.start()
    return live


def test_the_first_live_bar_is_decided_on_the_data_services_history(
    data_url: str, tmp_path: Path
) -> None:
    live = engine(tmp_path, data_url)
    bar = live_bar()
    live.on_bar(bar)
    # decided at once, although Kite's history already holds the bar (the clock is past its
    # close): the warm-up stops before the bar being handled
    assert live.last_bar("ref", "INFY") == bar.start
    history = live._history_of("NSE", "INFY", "day", 60)
    before = [(d, c) for d, c in kitesim_days() if d < LIVE_DAY][-60:]
    got = [(to_day(b.start), Decimal(str(b.close))) for b in history[:-1]]
    assert len(got) >= 60
    assert got[-60:] == before  # the closes the backtester reads, none after the live bar
    assert to_day(history[-1].start) == LIVE_DAY
    assert history[-1].volume == bar.volume  # the live bar, not the warm-up's copy of it


def to_day(start: datetime) -> date:
    return start.astimezone(IST).date()


def test_an_unreachable_data_service_leaves_the_live_bars(tmp_path: Path) -> None:
    live = engine(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert live.on_bar(live_bar()) == []
    assert len(live._history_of("NSE", "INFY", "day", 60)) == 1


def test_a_backtest_job_over_the_candles_api_equals_one_over_the_files(
    data_url: str, tmp_path: Path
) -> None:
    request = BacktestRequest.model_validate(
        {
            "strategy": "sma_cross",
            "symbols": ["INFY"],
            "from": "2024-01-01",
            "to": "2024-06-28",
            "params": {"fast_bars": 3, "slow_bars": 10},
            "risk": {"enforce_market_hours": False},
        }
    )
    with DataClient(data_url) as client:
        over_api, summary = run(
            request, out_dir=tmp_path / "api", cache_dir=None, data_dir=None, data=client
        )
    over_files, _ = run(
        request, out_dir=tmp_path / "files", cache_dir=None, data_dir=KITESIM_INFY.parent
    )
    assert summary["trades"] == len(over_files.trades) > 0
    # the same signals (kitesim's candles may be built from its finer bars, so fill prices can
    # differ by paise from the daily file's; the entries and exits fall on the same bars)
    assert [(t.symbol, t.opened_at, t.closed_at) for t in over_api.trades] == [
        (t.symbol, t.opened_at, t.closed_at) for t in over_files.trades
    ]
