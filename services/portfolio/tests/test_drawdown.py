"""One drawdown everywhere (issue 17): after a fall inside the first day, `/performance`, the
drawdown gauges on `/metrics` and the equity curve's drawdown column give the same figure,
measured on every recorded point from a peak that starts at the initial capital. (Before, the
report looked at day closes only and said 0.0 while the gauge showed the fall.)"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from portfolio_recorded import fill, m
from prometheus_client.parser import text_string_to_metric_families

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.messages import Envelope, Tick
from dalal_shared.streams import MARKET_TICKS
from dalal_shared.testing import bearer, free_port, wait_until

KEY = "portfolio-test-key-0123456789"


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        initial_capital_rupees=D("1000000"),
        bus_block_ms=50,
        outbox_interval_seconds=0.05,  # the gauges follow within a round
        equity_snapshot_interval_seconds=3600,  # snapshots are taken by the test
        broker_url=f"http://127.0.0.1:{free_port()}",
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def gauge(client: TestClient, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return float("nan")


def test_performance_metrics_and_curve_agree_on_the_drawdown(
    client: TestClient, redis_url: str
) -> None:
    service = client.app.state.portfolio
    bus = redis.Redis.from_url(redis_url)
    service.apply_fill(fill("t1", 1, "RELIANCE", "BUY", 100, "1000", m(0)))

    def price(p: str, minutes: int) -> None:
        tick = Tick(
            instrument_token=738561, symbol="RELIANCE", last_price=D(p), exchange_ts=m(minutes)
        )
        bus.xadd(MARKET_TICKS, Envelope.wrap(tick, source="data").to_fields())
        wait_until(lambda: service.marks().get("RELIANCE") == D(p), message=f"marked at {p}")

    price("1000", 1)
    service.snapshot()  # the initial capital less the buy's charges
    price("900", 2)  # a fall of about Rs 10,000 on the first day: no day close yet
    service.snapshot()
    perf = client.get("/performance").json()
    falls = [D(p["drawdown"]) for p in client.get("/equity-curve").json()["points"]]
    equity = D(client.get("/portfolio").json()["equity"])
    expected = D("1000000") - equity  # the peak is the initial capital
    assert D(perf["max_drawdown_rupees"]) == expected.quantize(D("0.01")) > D("10000")
    assert perf["max_drawdown"] == pytest.approx(float(expected / D("1000000")))
    assert max(falls) == (expected / D("1000000")).quantize(D("0.000001"))
    wait_until(
        lambda: gauge(client, "dalal_portfolio_drawdown_rupees") == pytest.approx(float(expected)),
        message="the gauge shows the same fall",
    )
    assert gauge(client, "dalal_portfolio_drawdown_ratio") == pytest.approx(perf["max_drawdown"])

    price("950", 3)  # a partial recovery: the gauge is the drawdown now, the maximum stays
    assert client.get("/performance").json()["max_drawdown_rupees"] == perf["max_drawdown_rupees"]
    wait_until(
        lambda: 0 < gauge(client, "dalal_portfolio_drawdown_rupees") < float(expected),
        message="the gauge follows the recovery",
    )
    bus.close()
