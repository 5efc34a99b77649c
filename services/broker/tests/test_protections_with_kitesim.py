"""Protective stops at the exchange (protections.py) against kitesim's GTT routes, through the
official client: a stop and target kept as one OCO GTT, fired while the broker is SIGKILLed,
its order and fills reported after the restart under the protection's id; a protection
modified in place, removed, refused with Kite's reason, and sent as a bus command."""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from typing import Any

import redis
from kiteconnect import exceptions as kex

from dalal_shared.messages import Envelope, ProtectPosition
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until

from .conftest import Broker, Sim, events


def ltp(kitesim: Sim, symbol: str) -> Decimal:
    """kitesim's last price now (Kite's quote budget is shared with the broker: a 429 is
    asked again)."""
    kite = kitesim.client()

    def ask() -> Decimal | None:
        try:
            return Decimal(str(kite.ltp([f"NSE:{symbol}"])[f"NSE:{symbol}"]["last_price"]))
        except kex.NetworkException:
            return None

    return wait_until(ask, message=f"the last price of {symbol}")


def grid(value: Decimal) -> str:
    return str((value / Decimal("0.05")).quantize(Decimal(1)) * Decimal("0.05"))


def buy(broker: Broker, kitesim: Sim, coid: str, symbol: str, qty: int) -> None:
    order = {
        "client_order_id": coid,
        "symbol": symbol,
        "side": "BUY",
        "quantity": qty,
        "order_type": "LIMIT",
        "price": grid(ltp(kitesim, symbol) * Decimal("1.02")),
        "product": "CNC",
    }
    assert broker.post("/orders", order).json()["status"] == "OPEN"
    kitesim.control("/clock/advance", {"seconds": 120})
    wait_until(lambda: broker.order(coid)["status"] == "COMPLETE", message=f"{coid} filled")


def protection(coid: str, symbol: str, qty: int, stop: str, target: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": symbol,
        "quantity": qty,
        "stop_price": stop,
    }
    if target is not None:
        body["target_price"] = target
    return body


def test_a_gtt_fires_while_the_broker_is_down_and_its_fills_arrive_after_restart(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker = start_broker(DALAL_PROTECTION_CHECK_SECONDS="0.5")
    broker.login(kitesim)
    buy(broker, kitesim, "prot-buy", "RELIANCE", 10)
    price = ltp(kitesim, "RELIANCE")
    stop, target = grid(price * Decimal("0.995")), grid(price * Decimal("1.005"))
    body = protection("prot-exit", "RELIANCE", 10, stop, target)
    placed = broker.post("/protections", body)
    assert placed.status_code == 200, placed.text
    assert placed.json()["status"] == "ACTIVE", placed.json()["message"]
    gtt_id = placed.json()["gtt_id"]
    kite = kitesim.client()
    at_kite = kite.get_gtt(gtt_id)
    assert (at_kite["status"], at_kite["type"]) == ("active", "two-leg")
    assert at_kite["condition"]["trigger_values"] == [float(stop), float(target)]
    assert [o["quantity"] for o in at_kite["orders"]] == [10, 10]
    # the same terms again: the same GTT, nothing new at Kite
    assert broker.post("/protections", body).json()["gtt_id"] == gtt_id
    assert [g["id"] for g in kite.get_gtts() if g["status"] == "active"] == [gtt_id]
    assert [e.type for e in events(redis_url, coid="prot-exit")] == ["ProtectionPlaced"]

    broker.proc.signal(signal.SIGKILL)  # Dalal is down; the market is not
    broker.proc.process.wait()

    def fired() -> dict[str, Any] | None:
        kitesim.control("/clock/advance", {"seconds": 300})
        gtt = kite.get_gtt(gtt_id)
        return gtt if gtt["status"] == "triggered" else None

    gtt = wait_until(fired, timeout=120, interval=0.1, message="the GTT fired on the replay")
    [result] = [o["result"] for o in gtt["orders"] if o["result"]]
    order_id = result["order_result"]["order_id"]
    kitesim.control("/clock/advance", {"seconds": 300})

    restarted = start_broker(DALAL_PROTECTION_CHECK_SECONDS="0.5")
    done = wait_until(
        lambda: (
            (o := restarted.get("/orders/prot-exit")).status_code == 200
            and o.json()["status"] == "COMPLETE"
            and o.json()
        ),
        timeout=60,
        message="the GTT's order journaled under the protection's id and tracked to its fill",
    )
    assert (done["broker_order_id"], done["side"], done["filled_quantity"]) == (
        order_id,
        "SELL",
        10,
    )
    assert done["reason"] == "gtt"
    shown = restarted.get("/protections/prot-exit").json()
    assert (shown["status"], shown["broker_order_id"]) == ("TRIGGERED", order_id)
    seen = events(redis_url, coid="prot-exit")
    removed = [e.message for e in seen if e.type == "ProtectionRemoved"]
    assert [r.reason for r in removed] == ["triggered"]
    fills = [e.message for e in seen if e.type == "OrderFilled"]
    assert sum(f.quantity for f in fills) == 10 and {f.side for f in fills} == {"SELL"}
    # the holding is gone at Kite, and the journal agrees with Kite's books
    assert restarted.get("/reconcile").json()["ok"]
    # the restarted broker's log tells the story as an audit trail (JSON lines)
    trail = [
        json.loads(line)
        for line in restarted.proc.output().splitlines()
        if line.startswith("{") and '"audit": true' in line
    ]
    told = {(t["event"], t.get("client_order_id")) for t in trail}
    assert {
        ("protection.removed", "prot-exit"),
        ("order.filled", "prot-exit"),
    } <= told, sorted(told)


def test_a_protection_is_modified_removed_refused_and_taken_from_the_bus(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker = start_broker(DALAL_PROTECTION_CHECK_SECONDS="0.5")
    broker.login(kitesim)
    buy(broker, kitesim, "mod-buy", "TCS", 5)
    price = ltp(kitesim, "TCS")
    first = broker.post(
        "/protections", protection("mod-exit", "TCS", 5, grid(price * Decimal("0.8")), None)
    )
    gtt_id = first.json()["gtt_id"]
    assert first.json()["status"] == "ACTIVE"
    lower = grid(price * Decimal("0.7"))
    moved = broker.post("/protections", protection("mod-exit", "TCS", 5, lower, None)).json()
    assert (moved["status"], moved["gtt_id"], moved["stop_price"]) == ("ACTIVE", gtt_id, lower)
    kite = kitesim.client()
    assert kite.get_gtt(gtt_id)["condition"]["trigger_values"] == [float(lower)]

    gone = httpx_delete(broker, "/protections/mod-exit")
    assert gone["status"] == "CANCELLED"
    assert kite.get_gtt(gtt_id)["status"] == "deleted"
    kinds = [e.message for e in events(redis_url, coid="mod-exit")]
    assert [type(k).__name__ for k in kinds] == [
        "ProtectionPlaced",
        "ProtectionPlaced",
        "ProtectionRemoved",
    ]
    assert kinds[-1].reason == "cancelled"

    # Kite's rule (a trigger at least 0.25% from the price): FAILED with Kite's words
    close = broker.post("/protections", protection("near-exit", "TCS", 5, grid(price), None))
    assert close.json()["status"] == "FAILED" and "too close" in close.json()["message"]
    [failed] = [e.message for e in events(redis_url, coid="near-exit")]
    assert (type(failed).__name__, failed.reason) == ("ProtectionRemoved", "failed")

    # from the bus, as the engine sends it
    client = redis.Redis.from_url(redis_url)
    command = ProtectPosition(
        client_order_id="bus-exit", symbol="TCS", quantity=5, stop_price=Decimal(lower)
    )
    client.xadd(ORDERS_COMMANDS, Envelope.wrap(command, source="engine").to_fields())
    client.close()
    row = wait_until(
        lambda: (r := broker.get("/protections/bus-exit")).status_code == 200 and r.json(),
        message="the bus command placed",
    )
    assert row["status"] == "ACTIVE" and kite.get_gtt(row["gtt_id"])["status"] == "active"
    assert broker.get("/protections/none-such").status_code == 404


def httpx_delete(broker: Broker, path: str) -> dict[str, Any]:
    import httpx

    from .conftest import AUTH

    resp = httpx.delete(f"{broker.url}{path}", headers=AUTH, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()
