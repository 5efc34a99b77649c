"""The portfolio HTTP API, in process, against a real Redis and a SQLite ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from portfolio_recorded import SESSION

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.testing import bearer, free_port

KEY = "portfolio-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEED = Path(__file__).parent / "fixtures" / "portfolio_state.json"


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        initial_capital_rupees=D("1000000"),
        bus_block_ms=50,
        broker_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def load_session(client: TestClient) -> None:
    for fill in SESSION:
        client.app.state.portfolio.apply_fill(fill)


def test_positions_trades_and_portfolio(client: TestClient) -> None:
    load_session(client)
    positions = client.get("/positions").json()["positions"]
    assert [(p["symbol"], p["quantity"]) for p in positions] == [("RELIANCE", 3)]
    infy = client.get("/positions/INFY").json()["positions"][0]
    assert infy["quantity"] == 0 and D(infy["realised_pnl_gross"]) > 0
    trades = client.get("/trades").json()["trades"]
    assert {t["symbol"] for t in trades} == {"INFY", "TCS"}
    (infy_trip,) = client.get("/trades", params={"symbol": "INFY"}).json()["trades"]
    assert [e["reason"] for e in infy_trip["exits"]][:2] == ["target_1", "target_2"]
    summary = client.get("/portfolio").json()
    assert D(summary["equity"]) == D(summary["cash"]) + D(summary["market_value"])
    assert summary["open_positions"] == 1


def test_performance_and_equity_curve(client: TestClient) -> None:
    load_session(client)
    perf = client.get("/performance").json()
    assert perf["trades"] == 2 and perf["wins"] == 2
    assert perf["seed_metrics"]["total_trades"] == 2
    curve = client.get("/equity-curve").json()["points"]
    assert curve and "equity" in curve[-1]
    page = client.get("/equity-curve", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")


def test_deposits_and_withdrawals_need_the_key_and_are_idempotent(client: TestClient) -> None:
    body = {"key": "dep-1", "amount_rupees": "5000"}
    no_key = {"Authorization": ""}
    assert client.post("/cash/deposits", json=body, headers=no_key).status_code == 401
    assert client.get("/portfolio", headers=no_key).status_code == 401  # reads need it too
    first = client.post("/cash/deposits", json=body, headers=AUTH).json()
    again = client.post("/cash/deposits", json=body, headers=AUTH).json()
    assert first["recorded"] and not again["recorded"]
    assert D(again["portfolio"]["cash"]) == D("1005000")
    r = client.post(
        "/cash/withdrawals", json={"key": "wd-1", "amount_rupees": "2000000"}, headers=AUTH
    )
    assert (r.status_code, r.json()["error"]) == (400, "insufficient_funds")
    r = client.post("/cash/deposits", json={"key": "dep-1", "amount_rupees": "1"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]) == (409, "conflict")


def test_seed_import_and_export_under_the_seed_names(client: TestClient) -> None:
    state = json.loads(SEED.read_text())
    r = client.post("/seed/import", json=state, headers=AUTH)
    assert r.status_code == 200 and r.json()["imported"]
    assert client.post("/seed/import", json=state, headers=AUTH).json()["imported"] is False
    metrics = client.get("/performance").json()["seed_metrics"]
    assert metrics["total_trades"] == 2 and metrics["wins"] == 1 and metrics["losses"] == 1
    assert metrics["total_pnl"] == 1150.0
    assert metrics["current_capital"] == 101150.0  # what the seed itself reported
    assert metrics["total_return_pct"] == pytest.approx(1.15)
    (infy,) = client.get("/positions/INFY").json()["positions"]
    assert (infy["quantity"], infy["average_price"]) == (20, "1500.5000")
    exported = client.get("/seed/export").json()
    assert exported["positions"]["INFY"]["qty"] == 20
    # cash: the seed's initial capital + its realised P&L - the open position's cost
    assert D(client.get("/portfolio").json()["cash"]) == D("100000") + D("1150") - D("30010")
    other = {**state, "initial_capital": 5}
    r = client.post("/seed/import", json=other, headers=AUTH)
    assert (r.status_code, r.json()["error"]) == (409, "seed_already_imported")


def test_reconcile_lists_every_break(client: TestClient) -> None:
    load_session(client)
    view = {
        "positions": [
            {"symbol": "RELIANCE", "product": "CNC", "quantity": 2, "average_price": "2900.05"},
            {"symbol": "WIPRO", "product": "MIS", "quantity": 5, "average_price": "300"},
        ],
        "holdings": [],
        "trades": [
            {"trade_id": "T201", "symbol": "RELIANCE", "product": "CNC", "side": "BUY",
             "quantity": 3, "price": "2900.05"},
            {"trade_id": "X9", "symbol": "WIPRO", "product": "MIS", "side": "BUY",
             "quantity": 5, "price": "300"},
        ],
    }  # fmt: skip
    result = client.post("/reconcile", json=view, headers=AUTH).json()
    kinds = {(b["kind"], b["symbol"]) for b in result["breaks"]}
    assert ("quantity_mismatch", "RELIANCE") in kinds
    assert ("missing_in_ledger", "WIPRO") in kinds
    assert ("trade_missing_in_ledger", "WIPRO") in kinds
    assert not result["clean"]
    view["positions"] = view["positions"][:1]
    view["positions"][0]["quantity"] = 3
    view["trades"] = None
    assert client.post("/reconcile", json=view, headers=AUTH).json()["clean"]


BAD_REQUESTS = [
    ("get", "/positions/infy", None, 422, "validation_error"),
    ("get", "/positions/NOSUCH", None, 404, "unknown_symbol"),
    ("get", "/positions", {"include_closed": "maybe"}, 422, "validation_error"),
    ("get", "/trades", {"limit": "0"}, 422, "validation_error"),
    ("get", "/trades", {"symbol": "lower"}, 422, "validation_error"),
    ("get", "/equity-curve", {"format": "png"}, 422, "validation_error"),
    ("get", "/reconcile", None, 503, "broker_unavailable"),  # no broker at broker_url
    ("post", "/reconcile", {"positions": "x"}, 422, "validation_error"),
    ("post", "/cash/deposits", {"key": "d", "amount_rupees": "-5"}, 422, "validation_error"),
    ("post", "/cash/deposits", {"key": "bad key!", "amount_rupees": "5"}, 422, "validation_error"),
    ("post", "/cash/withdrawals", {"amount_rupees": "5"}, 422, "validation_error"),
    ("post", "/seed/import", {"initial_capital": "lots"}, 422, "validation_error"),
    ("post", "/seed/import", {"initial_capital": 1, "current_capital": 1,
                              "positions": {"X": {"symbol": "X", "entry_price": -1, "qty": 1,
                                                  "entry_time": "2025-01-01T10:00:00"}}},
     422, "validation_error"),
    ("get", "/nowhere", None, 404, "not_found"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "payload", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_a_code(
    client: TestClient, method: str, path: str, payload, status: int, code: str
) -> None:
    if method == "get":
        r = client.get(path, params=payload)
    else:
        r = client.post(path, json=payload, headers=AUTH)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
