"""The engine app in process, on a real Redis and SQLite: the daily-loss gauges on /metrics move
with the portfolio's equity snapshots from the bus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from engine_fixtures import CONFIG, KNOWN, announce_safe, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Envelope, EquitySnapshot, SessionClosed
from dalal_shared.streams import PORTFOLIO_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import bearer, wait_until
from dalal_shared.timeutil import utcnow

KEY = "engine-app-test-key-0123456789"
LIMITED = CONFIG.replace(
    "{enforce_market_hours: false}",
    "{enforce_market_hours: false, max_daily_loss_rupees: 5000}",
).replace("name: ref", "name: lossy")


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "strategies.yaml").write_text(LIMITED)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "strategies.yaml",
        bus_block_ms=50,
        # live trading's clock: the portfolio's snapshots are marked on today's date (on the
        # exchange clock they wait for the first bar to say what day it is)
        **{**replay_settings(), "market_clock": "wall"},
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def gauge(client: TestClient, name: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and 'strategy="lossy"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def snapshot(equity: str) -> dict[bytes | str, bytes | str]:
    e = Decimal(equity)
    msg = EquitySnapshot(
        equity=e,
        cash=e,
        realised_pnl=Decimal(0),
        unrealised_pnl=Decimal(0),
        open_positions=0,
        at=utcnow(),
    )
    return Envelope.wrap(msg, source="portfolio").to_fields()


def test_daily_loss_gauges_follow_equity_and_show_the_halt(
    client: TestClient, redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    assert gauge(client, "dalal_engine_daily_loss_limit_rupees") == 5000.0
    assert gauge(client, "dalal_engine_halted") == 0.0
    r.xadd(PORTFOLIO_EVENTS, snapshot("1000000"))
    r.xadd(PORTFOLIO_EVENTS, snapshot("997000"))
    wait_until(
        lambda: gauge(client, "dalal_engine_daily_pnl_rupees") == -3000.0,
        message="daily P&L of -3000 on /metrics",
    )
    assert gauge(client, "dalal_engine_halted") == 0.0  # 3,000 lost, limit 5,000
    r.xadd(PORTFOLIO_EVENTS, snapshot("994000"))
    wait_until(lambda: gauge(client, "dalal_engine_halted") == 1.0, message="halted on /metrics")
    assert gauge(client, "dalal_engine_daily_pnl_rupees") == -6000.0
    risk = client.get("/engine/status").json()["strategies"]["lossy"]["risk"]
    assert risk["halted_for_the_day"] is True and risk["daily_pnl_rupees"] == "-6000.00"


SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
"""


def test_a_tick_through_the_stop_on_the_bus_sends_one_exit(redis_url: str, tmp_path: Path) -> None:
    from engine_fixtures import infy_bars

    from dalal_shared.messages import OrderFilled, PlaceOrder, Tick
    from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS
    from dalal_shared.timeutil import IST

    (tmp_path / "swing.yaml").write_text(SWING)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "swing.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    r = redis.Redis.from_url(redis_url)
    announce_safe(r)

    def commands() -> list[PlaceOrder]:
        out = []
        for _id, fields in r.xrange(ORDERS_COMMANDS):
            msg = Envelope.from_fields(fields).message
            if isinstance(msg, PlaceOrder):
                out.append(msg)
        return out

    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        assert client.post("/engine/start", headers={"Authorization": f"Bearer {KEY}"}).json()[
            "running"
        ]
        # the bar swing enters on (found in process: same strategy, same bars)
        probe = LiveEngine(
            load_text(SWING),
            EngineStore.open(f"sqlite:///{tmp_path}/probe.sqlite3"),
            initial_equity_rupees=settings.initial_capital_rupees,
            safety_known=KNOWN,
        )
        probe.start()
        bars = infy_bars()
        n = next(k for k, b in enumerate(bars) if probe.on_bar(b))
        for bar in bars[: n + 1]:
            r.xadd("market.bars.day", Envelope.wrap(bar, source="data").to_fields())
        (entry,) = wait_until(commands, message="the entry on orders.commands")
        assert entry.side == "BUY"
        bar = bars[n]
        fill_price = Decimal(str(bar.close))
        r.xadd(
            ORDERS_EVENTS,
            Envelope.wrap(
                OrderFilled(
                    client_order_id=entry.client_order_id,
                    broker_order_id="b-1",
                    trade_id="t-1",
                    symbol="INFY",
                    side="BUY",
                    product="CNC",
                    quantity=entry.quantity,
                    price=fill_price,
                    filled_at=datetime(2021, 2, 1, 9, 20, tzinfo=IST),
                ),
                source="broker",
            ).to_fields(),
        )
        live = client.app.state.live
        wait_until(lambda: live.states[("sw", "INFY")].quantity == entry.quantity, message="fill")
        stop = live.states[("sw", "INFY")].state["stop"]
        tick = Tick(
            instrument_token=408065,
            symbol="INFY",
            last_price=Decimal(f"{stop - 1:.2f}"),
            exchange_ts=datetime(2021, 2, 1, 11, 0, tzinfo=IST),
        )
        for _ in range(2):  # the same tick twice: one exit
            r.xadd(MARKET_TICKS, Envelope.wrap(tick, source="data").to_fields())
        wait_until(lambda: len(commands()) == 2, message="the stop exit on orders.commands")
        exit_ = commands()[1]
        assert (exit_.side, exit_.quantity) == ("SELL", entry.quantity)
        assert exit_.client_order_id.startswith("S-")
        last = r.xrevrange(MARKET_TICKS, count=1)[0][0]
        wait_until(
            lambda: any(
                g["name"] == b"engine" and g["last-delivered-id"] == last and g["pending"] == 0
                for g in r.xinfo_groups(MARKET_TICKS)
            ),
            message="both ticks consumed",
        )
        assert len(commands()) == 2


def test_the_end_of_a_session_is_not_an_error_for_the_engine(
    client: TestClient, redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    closed = SessionClosed(day=date(2025, 3, 5), closed_at=utcnow())
    r.xadd(SYSTEM_EVENTS, Envelope.wrap(closed, source="data").to_fields())
    wait_until(
        lambda: (
            r.xinfo_groups(SYSTEM_EVENTS)
            and r.xpending(SYSTEM_EVENTS, "engine")["pending"] == 0
            and r.xinfo_groups(SYSTEM_EVENTS)[0]["last-delivered-id"] != b"0-0"
        ),
        message="SessionClosed consumed",
    )
    assert not r.exists(f"dlq.{SYSTEM_EVENTS}")
    assert client.get("/engine/status").status_code == 200


def test_the_engines_own_loops_are_supervised_and_reported(client: TestClient) -> None:
    """The safety-state reader (and every cycle and clock follower) runs under the task
    registry: `dalal_task_up` reports it, and a dead or failing loop turns /readyz red."""

    def up() -> str | None:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('dalal_task_up{task="engine:safety-state"}'):
                return line
        return None

    line = wait_until(up, timeout=20, message="the safety-state task in dalal_task_up")
    assert line.endswith(" 1.0"), line
