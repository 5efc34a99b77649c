"""Money leaves the portfolio API to the paisa: a same-day CNC round trip exited in three
parts leaves pro-rata entry charges with sub-paisa digits inside the ledger (4 decimals); the
positions, trades and portfolio routes show whole paise, and the charges are the intraday ones
(`dalal_shared.charges` day netting)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from portfolio_recorded import fill

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.charges import TradeFill, day_charges
from dalal_shared.testing import bearer, free_port
from dalal_shared.timeutil import IST

AT = datetime(2025, 3, 3, 10, 0, tzinfo=IST)


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key="portfolio-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        bus_block_ms=50,
        broker_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def paise_only(text: str) -> bool:
    return D(text) == D(text).quantize(D("0.01"))


def test_money_is_shown_to_the_paisa_and_a_same_day_round_trip_is_intraday(client: TestClient):
    fills = [
        fill("t1", "1", "INFY", "BUY", 7, "1500.05", AT),
        fill("t2", "2", "INFY", "SELL", 2, "1510.10", AT.replace(hour=11)),
        fill("t3", "3", "INFY", "SELL", 2, "1511.15", AT.replace(hour=12)),
        fill("t4", "4", "INFY", "SELL", 3, "1499.95", AT.replace(hour=13)),
    ]
    service = client.app.state.portfolio
    for f in fills:
        service.apply_fill(f)
    (trip,) = client.get("/trades").json()["trades"]
    (position,) = client.get("/positions/INFY").json()["positions"]
    portfolio = client.get("/portfolio").json()
    money = [trip["realised_pnl_net"], trip["charges"], position["realised_pnl_net"]]
    money += [e["realised_pnl_net"] for e in trip["exits"]] + [e["charges"] for e in trip["exits"]]
    money += [portfolio["realised_net"], portfolio["charges"], portfolio["cash"]]
    assert all(paise_only(m) for m in money), money
    # inside, the exits' shares of the entry charges carry more digits than a paisa
    book_exits = service.book.round_trips()[0].exits
    assert any(e.charges != e.charges.quantize(D("0.01")) for e in book_exits)
    # the round trip pays the intraday charges of its day (no delivery STT, no DP)
    expected = day_charges(
        [TradeFill(f.broker_order_id, f.side, f.quantity, f.price) for f in fills],  # type: ignore[arg-type]
        "MIS",
        AT.date(),
    )
    assert D(trip["charges"]) == expected.total
    assert D(portfolio["charges"]) == expected.total
