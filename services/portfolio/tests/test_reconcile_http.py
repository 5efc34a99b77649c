"""GET /reconcile reads the broker's view over HTTP (a stub of the broker-gateway's
GET /positions, /holdings and /trades, in Kite's shapes) and lists every break."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_portfolio.ledger import Fill
from dalal_shared.testing import bearer, free_port
from dalal_shared.timeutil import IST

DAY1 = datetime(2025, 3, 3, 10, 0, tzinfo=IST)
DAY2 = datetime(2025, 3, 4, 10, 0, tzinfo=IST)


class StubBroker:
    """The broker-gateway's three view routes; `routes` maps a path to (status, JSON body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.hits: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.hits.append(self.path)
                status, body = stub.routes.get(self.path, (404, {"error": "not_found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubBroker:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def stub() -> Iterator[StubBroker]:
    with StubBroker() as s:
        yield s


def app_client(redis_url: str, tmp_path: Path, broker_url: str) -> TestClient:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key="portfolio-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        initial_capital_rupees=D("1000000"),
        bus_block_ms=50,
        broker_url=broker_url,
        broker_timeout_seconds=5,
    )
    return TestClient(build_app(settings), headers=bearer(settings))


def fill(trade_id: str, symbol: str, qty: int, price: str, at: datetime) -> Fill:
    return Fill(trade_id, f"c{trade_id}", f"b{trade_id}", "NSE", symbol, "BUY", "CNC", qty,
                D(price), at)  # fmt: skip


def kite_position(symbol: str, qty: int, avg: float, product: str = "CNC") -> dict[str, Any]:
    return {"tradingsymbol": symbol, "exchange": "NSE", "instrument_token": 1, "product": product,
            "quantity": qty, "overnight_quantity": 0, "multiplier": 1, "average_price": avg,
            "last_price": avg, "pnl": 0}  # fmt: skip


def kite_holding(symbol: str, qty: int, t1: int, avg: float) -> dict[str, Any]:
    return {"tradingsymbol": symbol, "exchange": "NSE", "instrument_token": 2, "product": "CNC",
            "quantity": qty, "t1_quantity": t1, "average_price": avg,
            "last_price": avg}  # fmt: skip


def broker_trade(trade_id: str, symbol: str, qty: int, price: str) -> dict[str, Any]:
    return {"trade_id": trade_id, "client_order_id": "x", "broker_order_id": "y",
            "exchange": "NSE", "symbol": symbol, "side": "BUY", "product": "CNC",
            "quantity": qty, "price": price, "filled_at": DAY2.isoformat()}  # fmt: skip


def test_get_reconcile_against_the_broker_over_http(
    stub: StubBroker, redis_url: str, tmp_path: Path
) -> None:
    stub.routes = {
        "/positions": (200, {"net": [kite_position("INFY", 10, 1500.0),
                                     kite_position("SBIN", 0, 0.0, "MIS")],
                             "day": []}),
        "/holdings": (200, [kite_holding("TCS", 3, 2, 3000.0), kite_holding("WIPRO", 7, 0, 300.0)]),
        "/trades": (200, {"trades": [broker_trade("T2", "INFY", 10, "1500"),
                                     broker_trade("X1", "INFY", 1, "1500")]}),
    }  # fmt: skip
    with app_client(redis_url, tmp_path, stub.url) as client:
        service = client.app.state.portfolio
        service.apply_fill(fill("T1", "TCS", 5, "3000", DAY1))  # now a holding (3 + T+1 2)
        service.apply_fill(fill("T2", "INFY", 10, "1500", DAY2))  # today's position
        r = client.get("/reconcile")
        assert r.status_code == 200, r.text
        body = r.json()
    assert set(stub.hits) == {"/positions", "/holdings", "/trades"}
    assert body["positions_compared"] == 3 and body["trades_compared"] == 2
    assert sorted((b["kind"], b["symbol"], b["broker"]) for b in body["breaks"]) == [
        ("missing_in_ledger", "WIPRO", "7"),
        ("trade_missing_in_ledger", "INFY", "BUY 1 @ 1500"),
    ]
    assert not body["clean"]


def test_broker_errors_and_absence_are_503_broker_unavailable(
    stub: StubBroker, redis_url: str, tmp_path: Path
) -> None:
    stub.routes = {"/positions": (403, {"error": "session_expired", "message": "login"})}
    with app_client(redis_url, tmp_path, stub.url) as client:
        r = client.get("/reconcile")
        assert (r.status_code, r.json()["error"]) == (503, "broker_unavailable")
        assert "session_expired" in r.json()["message"]
    with app_client(redis_url, tmp_path, f"http://127.0.0.1:{free_port()}") as client:
        r = client.get("/reconcile")
        assert (r.status_code, r.json()["error"]) == (503, "broker_unavailable")
