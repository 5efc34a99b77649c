"""One real round trip through Redis: engine -> broker -> portfolio and engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import redis

from dalal_shared.bus import Publisher, group_info
from dalal_shared.messages import Envelope, OrderRejected, PlaceOrder, RiskDecided, SessionValid
from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS, ORDERS_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import wait_until

from .conftest import API_KEY, Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _events(client: redis.Redis, client_order_id: str) -> list[Envelope]:
    out = []
    for _id, fields in client.xrange(ORDERS_EVENTS):
        env = Envelope.from_fields(fields)
        if getattr(env.message, "client_order_id", None) == client_order_id:
            out.append(env)
    return out


def _consumed_by(client: redis.Redis, group: str, entry_id: bytes) -> bool:
    for g in client.xinfo_groups(ORDERS_EVENTS):
        if g["name"].decode() == group:
            last = g["last-delivered-id"].decode()
            done = tuple(map(int, last.split("-"))) >= tuple(map(int, entry_id.decode().split("-")))
            return done and g["pending"] == 0
    return False


def _engine_status(stack: Stack) -> dict:
    return httpx.get(f"{stack.url('engine')}/engine/status", headers=AUTH).json()


def _engine_hears_a_session(stack: Stack) -> None:
    """The engine is told (on `system.events`, as the broker says it after a login) that a
    Kite session is valid, while the broker itself has none: so an order the engine's risk
    manager lets through is rejected by the broker's own session check."""
    client = redis.Redis.from_url(stack.redis_url)
    message = SessionValid(user_id="AB1234", expires_at=datetime.now(UTC) + timedelta(hours=1))
    client.xadd(SYSTEM_EVENTS, Envelope.wrap(message, source="broker").to_fields())
    client.close()
    wait_until(lambda: _engine_status(stack)["session_valid"], message="the engine heard it")


def test_engine_order_is_refused_by_its_risk_manager_without_a_session(stack: Stack) -> None:
    wait_until(
        lambda: _engine_status(stack)["safety_state_known"], message="the engine asked the owners"
    )
    order = {"client_order_id": "rt-none-1", "symbol": "INFY", "side": "BUY", "quantity": 5}
    resp = httpx.post(f"{stack.url('engine')}/engine/orders", headers=AUTH, json=order)
    assert resp.status_code == 422, resp.text
    assert (resp.json()["error"], resp.json()["reason"]) == ("risk_refused", "session_invalid")
    gone = httpx.get(f"{stack.url('engine')}/engine/orders/rt-none-1", headers=AUTH)
    assert gone.status_code == 404  # nothing on its way
    client = redis.Redis.from_url(stack.redis_url)
    assert not any(
        getattr(Envelope.from_fields(f).message, "client_order_id", None) == "rt-none-1"
        for _i, f in client.xrange(ORDERS_COMMANDS)
    )
    # the refusal itself is on the bus, with its reason
    decided = [Envelope.from_fields(f).message for _i, f in client.xrange(ENGINE_DECISIONS)]
    assert any(
        isinstance(d, RiskDecided) and d.strategy == "manual" and d.reason == "session_invalid"
        for d in decided
    )
    client.close()


def test_engine_order_is_rejected_by_broker_without_session_and_seen_by_all(
    stack: Stack,
) -> None:
    _engine_hears_a_session(stack)
    client = redis.Redis.from_url(stack.redis_url)
    order = {
        "client_order_id": "rt-INFY-1",
        "symbol": "INFY",
        "side": "BUY",
        "quantity": 5,
        "order_type": "LIMIT",
        "price": "1500",
    }
    resp = httpx.post(f"{stack.url('engine')}/engine/orders", headers=AUTH, json=order)
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["strategy"]) == ("SUBMITTED", "manual")

    status = wait_until(
        lambda: (
            (r := httpx.get(f"{stack.url('engine')}/engine/orders/rt-INFY-1", headers=AUTH).json())[
                "status"
            ]
            == "REJECTED"
            and r
        ),
        message="engine sees the rejection",
    )
    assert status["reason"] == "no_session"

    [event] = wait_until(lambda: _events(client, "rt-INFY-1"), message="OrderRejected")
    assert isinstance(event.message, OrderRejected)
    assert event.source == "broker"
    # the correlation id of the command is carried onto the event
    [(_cmd_id, cmd_fields)] = [
        (i, f)
        for i, f in client.xrange(ORDERS_COMMANDS)
        if Envelope.from_fields(f).message.client_order_id == "rt-INFY-1"
    ]
    assert event.corr == Envelope.from_fields(cmd_fields).corr
    entry_id = next(
        i for i, f in client.xrange(ORDERS_EVENTS) if Envelope.from_fields(f).id == event.id
    )
    for group in ("portfolio", "engine"):
        wait_until(lambda g=group: _consumed_by(client, g, entry_id), message=f"{group} consumed")

    def handled(service: str) -> float:
        text = httpx.get(f"{stack.url(service)}/metrics").text
        for line in text.splitlines():
            if (
                line.startswith("dalal_bus_messages_handled_total")
                and 'type="OrderRejected"' in line
                and 'stream="orders.events"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert handled("portfolio") >= 1
    assert handled("engine") >= 1
    client.close()


async def test_same_command_twice_on_the_bus_yields_one_decision(stack: Stack) -> None:
    import redis.asyncio as aioredis

    aclient = aioredis.Redis.from_url(stack.redis_url)
    pub = Publisher(aclient, source="cli")
    command = PlaceOrder(client_order_id="dup-TCS-1", symbol="TCS", side="SELL", quantity=1)
    await pub.publish(ORDERS_COMMANDS, command)
    await pub.publish(ORDERS_COMMANDS, command)
    client = redis.Redis.from_url(stack.redis_url)

    def broker_done() -> bool:
        info = client.xinfo_groups(ORDERS_COMMANDS)
        broker = next(g for g in info if g["name"] == b"broker")
        return (
            broker["pending"] == 0
            and (broker.get("lag") in (0, None))
            and client.xrange(ORDERS_COMMANDS, min=f"({broker['last-delivered-id'].decode()}") == []
        )

    wait_until(broker_done, message="broker consumed both commands")
    assert len(_events(client, "dup-TCS-1")) == 1
    info = await group_info(aclient, ORDERS_COMMANDS, "broker")
    assert info is not None and info.pending == 0
    await aclient.aclose()
    client.close()


def test_engine_refuses_a_reused_id_for_a_different_order(stack: Stack) -> None:
    _engine_hears_a_session(stack)
    url = f"{stack.url('engine')}/engine/orders"
    first = {
        "client_order_id": "reuse-1",
        "symbol": "SBIN",
        "side": "BUY",
        "quantity": 1,
        "order_type": "LIMIT",
        "price": "600",
    }
    assert httpx.post(url, headers=AUTH, json=first).status_code == 202
    again = httpx.post(url, headers=AUTH, json=first)
    assert again.status_code == 200
    assert again.json()["client_order_id"] == "reuse-1"
    other = httpx.post(url, headers=AUTH, json={**first, "quantity": 2})
    assert other.status_code == 409
    assert other.json()["error"] == "conflict"


def test_broker_http_order_route_is_idempotent(stack: Stack) -> None:
    url = f"{stack.url('broker')}/orders"
    order = {"client_order_id": "http-1", "symbol": "ITC", "side": "BUY", "quantity": 3}
    first = httpx.post(url, headers=AUTH, json=order)
    second = httpx.post(url, headers=AUTH, json=order)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["reason"] == "no_session"
    client = redis.Redis.from_url(stack.redis_url)
    assert len(_events(client, "http-1")) == 1
    client.close()
