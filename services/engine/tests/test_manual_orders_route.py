"""`POST /engine/orders` through the engine's HTTP app against a real Redis: an order sent by
hand passes the risk manager, goes out through the outbox onto `orders.commands` once, is
refused with a reason code when the rules say so, and is never sent later by surprise when the
bus was down at the time (the caller got a 503)."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_shared.messages import Envelope, PlaceOrder, RiskDecided
from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS
from dalal_shared.testing import bearer, free_port

LIMIT = {
    "client_order_id": "hand-1",
    "symbol": "INFY",
    "side": "BUY",
    "quantity": 10,
    "order_type": "LIMIT",
    "price": "1500",
}


def _settings(redis_url: str, tmp_path: Path) -> EngineSettings:
    return EngineSettings(
        redis_url=redis_url,
        api_key="manual-orders-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        broker_url=f"http://127.0.0.1:{free_port()}",  # no broker: the state is told below
        equity_source="initial_capital",
    )


def _knows_a_safe_world(client: TestClient) -> None:
    """What the broker would answer (kill switch released, a valid session)."""
    live = client.app.state.live  # type: ignore[attr-defined]
    live.restore(live.safety.ticket(), kill_switch=(False, ""), session_valid=True)


def _commands(redis_url: str, coid: str) -> list[PlaceOrder]:
    r = redis.Redis.from_url(redis_url)
    try:
        found = [Envelope.from_fields(f).message for _i, f in r.xrange(ORDERS_COMMANDS)]
    finally:
        r.close()
    return [m for m in found if getattr(m, "client_order_id", None) == coid]


def test_a_hand_sent_order_goes_out_once_and_a_huge_one_is_refused(
    redis_url: str, tmp_path: Path
) -> None:
    settings = _settings(redis_url, tmp_path)
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        _knows_a_safe_world(client)
        first = client.post("/engine/orders", json=LIMIT)
        assert first.status_code == 202, first.text
        assert (first.json()["status"], first.json()["strategy"]) == ("SUBMITTED", "manual")
        again = client.post("/engine/orders", json=LIMIT)
        assert again.status_code == 200
        assert len(_commands(redis_url, "hand-1")) == 1
        shown = client.get("/engine/orders/hand-1").json()
        assert shown["status"] == "SUBMITTED"
        assert shown["created_at"].endswith("+05:30")  # API times are IST
        conflict = client.post("/engine/orders", json={**LIMIT, "quantity": 11})
        assert conflict.status_code == 409

        huge = {**LIMIT, "client_order_id": "hand-huge", "quantity": 10_000_000}
        refused = client.post("/engine/orders", json=huge)
        assert refused.status_code == 422, refused.text
        assert (refused.json()["error"], refused.json()["reason"]) == (
            "risk_refused",
            "position_cap",
        )
        assert client.get("/engine/orders/hand-huge").status_code == 404
        assert _commands(redis_url, "hand-huge") == []
        r = redis.Redis.from_url(redis_url)
        decided = [Envelope.from_fields(f).message for _i, f in r.xrange(ENGINE_DECISIONS)]
        r.close()
        assert any(
            isinstance(d, RiskDecided) and (d.strategy, d.reason) == ("manual", "position_cap")
            for d in decided
        )
        signals = client.get("/signals").json()
        assert signals and all(d["at"].endswith("+05:30") for d in signals)

        # a MARKET order with no price anywhere (no broker quote, no bar here) is not waved on
        market = {k: v for k, v in LIMIT.items() if k not in ("order_type", "price")}
        unpriced = client.post("/engine/orders", json={**market, "client_order_id": "hand-mkt"})
        assert (unpriced.status_code, unpriced.json()["reason"]) == (422, "no_reference_price")


def test_an_order_while_the_bus_is_down_is_a_503_and_never_sent_later(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    settings = _settings(dead, tmp_path)
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        _knows_a_safe_world(client)
        for _attempt in range(2):  # the retry is tried again, not taken as sent
            resp = client.post("/engine/orders", json=LIMIT)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "dependency_unavailable"
        shown = client.get("/engine/orders/hand-1").json()
        assert (shown["status"], shown["reason"]) == ("REJECTED", "bus_unavailable")
        live = client.app.state.live  # type: ignore[attr-defined]
        assert live.store.unpublished() == []  # the outbox will not send it by itself
