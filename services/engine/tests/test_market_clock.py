"""The market clock: decisions, the risk day, the rate window and market hours follow the
exchange's time, not the machine's.

* A replay over several simulated days (the engine app on a real bus, on the exchange clock)
  starts each day with a fresh daily-loss budget: a day halted by its loss does not halt the
  next one.
* The live loop's decisions on real 15-minute bars, market hours enforced, are the
  backtester's: the same actions, reasons, sizes and times, the session's last bar included."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from engine_fixtures import KNOWN, announce_safe, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.backtest import Backtester, BacktestSettings
from dalal_engine.config import EngineSettings
from dalal_engine.history import read_csv
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, Envelope, EquitySnapshot, OrderFilled, RiskDecided
from dalal_shared.streams import PORTFOLIO_EVENTS
from dalal_shared.testing import bearer, wait_until
from dalal_shared.timeutil import to_ist

KEY = "engine-clock-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
INFY_15M = Path(__file__).parents[2] / "kitesim/src/dalal_kitesim/data/nse/15minute/INFY.csv"
CONFIG = """
name: quarter
strategy: sma_cross
interval: 15minute
universe: [INFY]
params: {fast_bars: 3, slow_bars: 8, fixed_quantity: 10}
risk: {max_daily_loss_rupees: 1000, max_orders_per_minute: 200}
"""


def bars(n: int) -> list[Bar]:
    with INFY_15M.open() as fh:
        rows = list(csv.DictReader(fh))[:n]
    return [
        Bar(
            symbol="INFY",
            interval="15minute",
            start=datetime.fromisoformat(r["date"]),
            open=Decimal(r["open"]),
            high=Decimal(r["high"]),
            low=Decimal(r["low"]),
            close=Decimal(r["close"]),
            volume=int(r["volume"]),
        )
        for r in rows
    ]


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "strategies.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    announce_safe(redis.Redis.from_url(redis_url))
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        yield client


def test_a_sim_replay_resets_the_daily_loss_limit_each_day(app: TestClient, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    assert app.post("/engine/start", headers=AUTH).json()["running"]
    by_day: dict[str, list[Bar]] = {}
    for bar in bars(200):
        by_day.setdefault(to_ist(bar.start).date().isoformat(), []).append(bar)
    days = sorted(by_day)[:3]

    def risk() -> dict[str, Any]:
        return app.get("/engine/status").json()["strategies"]["quarter"]["risk"]

    def publish(stream: str, message: Any) -> None:
        r.xadd(stream, Envelope.wrap(message, source="test").to_fields())

    def snapshot(equity: Decimal) -> EquitySnapshot:
        return EquitySnapshot(
            equity=equity,
            cash=equity,
            realised_pnl=Decimal(0),
            unrealised_pnl=Decimal(0),
            open_positions=0,
            at=datetime.now().astimezone(),  # the portfolio's stamp: the wall clock
        )

    # the portfolio's snapshots come before any bar (`make run`: from its start, before the
    # login): the exchange's time is not known yet, so no day is marked (marked on the
    # machine's day, the risk day would stand years after the replay's and never move)
    publish(PORTFOLIO_EVENTS, snapshot(Decimal("1000001")))
    wait_until(
        lambda: app.get("/engine/status").json()["equity_rupees"] == "1000001.00",
        message="the early snapshot heard",
    )
    assert risk()["day"] is None
    equity = Decimal("1000000")
    for day in days:
        session = by_day[day]
        for bar in session[:4]:  # the morning
            publish("market.bars.15minute", bar)
        wait_until(lambda day=day: risk()["day"] == day, message=f"the risk day is {day}")
        assert risk()["halted_for_the_day"] is False  # a new day, a new budget
        equity -= 1500  # a loss over the 1,000-rupee limit, as the portfolio marks it
        publish(PORTFOLIO_EVENTS, snapshot(equity))
        wait_until(lambda: risk()["halted_for_the_day"], message=f"halted on {day}")
        assert risk()["day"] == day  # marked on the exchange's day, not the machine's
        for bar in session[4:]:  # the afternoon: entries refused for the loss
            publish("market.bars.15minute", bar)
        last = r.xrevrange("market.bars.15minute", count=1)[0][0]
        wait_until(
            lambda last=last: any(
                g["name"] == b"engine" and g["last-delivered-id"] == last and g["pending"] == 0
                for g in r.xinfo_groups("market.bars.15minute")
            ),
            message=f"{day} consumed",
        )
        assert risk()["halted_for_the_day"] is True
    refusals = [s for s in app.get("/signals").json() if s["reason"] == "daily_loss"]
    assert {s["at"][:10] for s in refusals} <= set(days)


def test_live_decisions_match_the_backtesters_with_market_hours(tmp_path: Path) -> None:
    cfg = load_text(CONFIG.replace("max_daily_loss_rupees: 1000", "max_daily_loss_rupees: 50000"))
    series = bars(700)
    warm, end = 100, 650
    live = LiveEngine(
        cfg,
        EngineStore.open(f"sqlite:///{tmp_path}/live.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    trade = 0
    for k, bar in enumerate(series[:end]):
        for order in live.on_bar(bar, decide=k >= warm):
            nxt = series[k + 1]  # it fills at the next bar's open, as in the backtester
            trade += 1
            live.on_order_event(
                OrderFilled(
                    client_order_id=order.client_order_id,
                    broker_order_id=f"b-{trade}",
                    trade_id=f"t-{trade}",
                    symbol="INFY",
                    side=order.side,
                    product="CNC",
                    quantity=order.quantity,
                    price=nxt.open,
                    filled_at=nxt.start,
                )
            )
    result = Backtester(
        cfg[0],
        {"INFY": read_csv(INFY_15M, "INFY")},
        BacktestSettings(start=series[warm].start, end=series[end].start),
    ).run()

    def key(d: Any) -> tuple[Any, ...]:
        return (d.action, d.approved, d.reason, d.quantity, d.at)

    ours = [
        (d.action, d.approved, d.reason, d.quantity, d.decided_at)
        for d in live.store.outbox_messages()
        if isinstance(d, RiskDecided)
    ]
    theirs = [key(d) for d in result.decisions]
    assert len(ours) >= 10
    assert ours == theirs
    last_bar_decisions = [d for d in ours if to_ist(d[4]).strftime("%H:%M") == "15:30"]
    assert last_bar_decisions  # decided on the session's last bar, the same way
