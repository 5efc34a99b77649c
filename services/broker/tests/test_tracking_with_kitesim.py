"""Against kitesim through the official client: order updates from the ticker WebSocket, modify,
the order-placer lease taken over after a SIGKILL, and the kill switch cancelling open orders."""

from __future__ import annotations

import signal
from decimal import Decimal
from typing import Any

import httpx
import redis

from dalal_shared.messages import Envelope, ModifyOrder, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until

from .conftest import AUTH, Sim, checksum, events, metric
from .test_orders_with_kitesim import limit_buy


def send(url: str, *messages: Any) -> None:
    client = redis.Redis.from_url(url)
    try:
        for message in messages:
            client.xadd(ORDERS_COMMANDS, Envelope.wrap(message, source="engine").to_fields())
    finally:
        client.close()


def test_a_fill_reported_on_the_ticker_yields_one_fill_and_a_postback_adds_none(
    start_broker, kitesim: Sim, redis_url
) -> None:
    # polling all but off, no postback URL at kitesim: only the ticker can tell the broker
    broker = start_broker(DALAL_POLL_INTERVAL_SECONDS="600")
    broker.login(kitesim)
    wait_until(
        lambda: metric(broker, "dalal_broker_order_stream_connected") == 1,
        message="order stream connected",
    )
    placed = broker.post("/orders", limit_buy("tk-1", qty=2))
    assert placed.json()["status"] == "OPEN", placed.text
    kitesim.control("/clock/advance", {"seconds": 120})
    done = wait_until(
        lambda: (o := broker.order("tk-1"))["status"] == "COMPLETE" and o, message="filled"
    )
    assert done["filled_quantity"] == 2
    fills = [e.message for e in events(redis_url, coid="tk-1") if e.type == "OrderFilled"]
    [at_kite] = kitesim.orders_tagged("tk-1")
    kite_trades = kitesim.client().order_trades(at_kite["order_id"])
    assert sorted(f.trade_id for f in fills) == sorted(str(t["trade_id"]) for t in kite_trades)
    assert sum(f.quantity for f in fills) == 2
    assert metric(broker, "dalal_broker_order_updates_total", path="ticker", outcome="applied") > 0
    assert metric(broker, "dalal_broker_order_updates_total", path="poll", outcome="applied") == 0
    before = [e.type for e in events(redis_url, coid="tk-1")]
    assert before[0] == "OrderAccepted" and before[-1] == "OrderUpdated"
    completes = [
        e
        for e in events(redis_url, coid="tk-1")
        if e.type == "OrderUpdated" and e.message.status == "COMPLETE"
    ]
    assert len(completes) == 1

    # the same final update again, by postback: accepted (checksum fine) and changes nothing
    body = {
        **{k: v for k, v in at_kite.items() if not hasattr(v, "isoformat")},
        "order_timestamp": "2024-01-01 09:20:00",
    }
    body["checksum"] = checksum(at_kite["order_id"], body["order_timestamp"])
    resp = httpx.post(f"{broker.url}/postbacks/kite", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert [e.type for e in events(redis_url, coid="tk-1")] == before
    assert (
        metric(broker, "dalal_broker_order_updates_total", path="postback", outcome="applied") == 0
    )

    # a new login kills the old token: the stream reconnects with the new one and carries on
    broker.login(kitesim)
    wait_until(
        lambda: (
            metric(broker, "dalal_broker_order_stream_reconnects_total", reason="new_login") >= 1
            and metric(broker, "dalal_broker_order_stream_connected") == 1
        ),
        message="reconnected after the new login",
    )
    assert broker.post("/orders", limit_buy("tk-2", qty=1)).json()["status"] == "OPEN"
    kitesim.control("/clock/advance", {"seconds": 120})
    wait_until(lambda: broker.order("tk-2")["status"] == "COMPLETE", message="tk-2 filled")
    assert len([e for e in events(redis_url, coid="tk-2") if e.type == "OrderFilled"]) == 1
    assert metric(broker, "dalal_broker_order_updates_total", path="poll", outcome="applied") == 0


def test_modify_an_open_order_by_http_and_by_command(
    broker, kitesim: Sim, shared_redis_url
) -> None:
    placed = broker.post("/orders", limit_buy("mod-1", symbol="INFY", qty=1, price="1"))
    assert placed.json()["status"] == "OPEN", placed.text
    url = f"{broker.url}/orders/mod-1"
    moved = httpx.patch(url, json={"price": "2", "quantity": 3}, headers=AUTH, timeout=30)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["price"], moved.json()["quantity"]) == ("2", 3)
    [at_kite] = kitesim.orders_tagged("mod-1")
    assert (at_kite["price"], at_kite["quantity"]) == (2.0, 3)
    updated = [
        e.message for e in events(shared_redis_url, coid="mod-1") if e.type == "OrderUpdated"
    ]
    assert updated and updated[-1].pending_quantity == 3
    assert (updated[-1].quantity, updated[-1].price) == (3, Decimal("2"))  # the new terms

    send(shared_redis_url, ModifyOrder(client_order_id="mod-1", price="3"))
    wait_until(lambda: kitesim.orders_tagged("mod-1")[0]["price"] == 3.0, message="modified")
    assert broker.order("mod-1")["price"] == "3"
    assert len(kitesim.orders_tagged("mod-1")) == 1

    # bad input and refusals: 4xx with a stable code, the order unchanged
    for body, status, code in (
        ({}, 400, "nothing_to_modify"),
        ({"quantity": 0}, 422, "validation_error"),
        ({"colour": "red"}, 422, "validation_error"),
        ({"quantity": 1_000_000}, 422, "max_order_value"),
    ):
        resp = httpx.patch(url, json=body, headers=AUTH, timeout=30)
        assert (resp.status_code, resp.json()["error"]) == (status, code), body
    assert kitesim.orders_tagged("mod-1")[0]["quantity"] == 3
    missing = httpx.patch(f"{broker.url}/orders/nope", json={"price": "2"}, headers=AUTH)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert httpx.patch(url, json={"price": "2"}).status_code == 401
    assert httpx.delete(url, headers=AUTH, timeout=30).status_code == 200
    # the journal learns CANCELLED from Kite's book (at once, or at the next poll when the sync
    # after the cancel met a 429: this test's own Kite client spends the same key's budget)
    wait_until(lambda: broker.order("mod-1")["status"] == "CANCELLED", message="cancelled")
    closed = httpx.patch(url, json={"price": "4"}, headers=AUTH, timeout=30)
    assert (closed.status_code, closed.json()["error"]) == (409, "order_closed")


def test_the_lease_passes_to_a_second_broker_when_the_first_is_killed(
    start_broker, kitesim: Sim, redis_url
) -> None:
    first = start_broker()
    first.login(kitesim)
    second = start_broker(wait_leader=False)
    assert second.get("/status").json()["leader"] is False
    refused = second.post("/orders", limit_buy("ls-0", qty=1))
    assert (refused.status_code, refused.json()["error"]) == (503, "not_leader")

    send(redis_url, PlaceOrder.model_validate(limit_buy("ls-1", symbol="TCS", qty=1, price="1")))
    wait_until(lambda: first.order("ls-1").get("status") == "OPEN", message="first placed")
    first.proc.signal(signal.SIGKILL)
    first.proc.process.wait()

    wait_until(lambda: second.get("/status").json()["leader"], message="second takes over")
    assert second.get("/session").json()["valid"] is True  # the stored session, shared
    send(redis_url, PlaceOrder.model_validate(limit_buy("ls-2", symbol="TCS", qty=1, price="1")))
    wait_until(lambda: second.order("ls-2").get("status") == "OPEN", message="second placed")
    assert len(kitesim.orders_tagged("ls-1")) == 1
    assert len(kitesim.orders_tagged("ls-2")) == 1
    assert kitesim.orders_tagged("ls-0") == []
    accepted = [e for e in events(redis_url, coid="ls-2") if e.type == "OrderAccepted"]
    assert len(accepted) == 1


def test_engaging_the_kill_switch_can_cancel_open_orders(
    start_broker, kitesim: Sim, redis_url
) -> None:
    broker = start_broker()
    broker.login(kitesim)
    for coid in ("kc-1", "kc-2"):
        resp = broker.post("/orders", limit_buy(coid, symbol="ITC", qty=1, price="1"))
        assert resp.json()["status"] == "OPEN", resp.text
    engaged = broker.post("/kill-switch/engage", {"reason": "drill", "cancel_open_orders": True})
    assert engaged.status_code == 200, engaged.text
    assert engaged.json()["engaged"] is True
    assert sorted(engaged.json()["cancelled"]) == ["kc-1", "kc-2"]
    for coid in ("kc-1", "kc-2"):
        [at_kite] = kitesim.orders_tagged(coid)
        assert at_kite["status"] == "CANCELLED"
        # the journal follows Kite's book (at once, or at the next poll when the sync after
        # the cancel met Kite's rate limit on a loaded machine)
        wait_until(
            lambda coid=coid: broker.order(coid)["status"] == "CANCELLED",
            message=f"{coid} cancelled in the journal",
        )
        assert "OrderCancelled" in [e.type for e in events(redis_url, coid=coid)]
    blocked = broker.post("/orders", limit_buy("kc-3", symbol="ITC", qty=1, price="1"))
    assert blocked.json()["reason"] == "kill_switch"
    assert broker.post("/kill-switch/release").json()["engaged"] is False
