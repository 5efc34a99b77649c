"""Guards that price every order, through the real desk and kitesim: a MARKET order is valued at
its reference price (here Kite's LTP from kitesim; no data service runs) widened by its market
protection, over `POST /orders` and the `orders.commands` stream; open MARKET orders count
toward the live capital cap."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

import httpx
import pytest
import redis

from dalal_shared.messages import Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until

from .conftest import AUTH, Broker, Sim, events, metric

pytestmark = pytest.mark.slow


# live mode, a capital cap of Rs 1,00,000, MARKET orders valued at their reference + 3%
LIVE_CAP_100000 = {
    "DALAL_MODE": "live",
    "DALAL_SESSION_KEY": "a-live-session-key-for-tests-0123",
    "DALAL_LIVE_CAPITAL_CAP_RUPEES": "100000",
    "DALAL_MARKET_PROTECTION_PCT": "3",
}


def market_buy(coid: str, qty: int, symbol: str = "RELIANCE") -> dict[str, Any]:
    return {
        "client_order_id": coid,
        "symbol": symbol,
        "side": "BUY",
        "quantity": qty,
        "order_type": "MARKET",
        "product": "CNC",
    }


def send(url: str, body: dict[str, Any]) -> None:
    client = redis.Redis.from_url(url)
    try:
        message = PlaceOrder.model_validate(body)
        client.xadd(ORDERS_COMMANDS, Envelope.wrap(message, source="engine").to_fields())
    finally:
        client.close()


def rejected_by_bus(broker: Broker, coid: str) -> dict[str, Any]:
    return wait_until(
        lambda: (o := broker.order(coid)).get("status") == "REJECTED" and o,
        timeout=60,
        message=f"{coid} rejected",
    )


def test_a_huge_market_order_is_refused_on_every_path_and_never_reaches_kite(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker: Broker = start_broker()
    broker.login(kitesim)

    by_http = broker.post("/orders", market_buy("huge-http", 10_000_000))
    assert by_http.status_code == 200, by_http.text
    assert (by_http.json()["status"], by_http.json()["reason"]) == ("REJECTED", "max_order_value")
    send(redis_url, market_buy("huge-bus", 10_000_000))
    assert rejected_by_bus(broker, "huge-bus")["reason"] == "max_order_value"
    for coid in ("huge-http", "huge-bus"):
        [event] = [e.message for e in events(redis_url, coid=coid)]
        assert (type(event).__name__, event.reason) == ("OrderRejected", "max_order_value")
    assert metric(broker, "dalal_broker_reference_prices_total", source="ltp") >= 1

    # no price anywhere (kitesim prices no YESBANK, and no tick came): refused, not waved through
    unpriced = broker.post("/orders", market_buy("nopx-http", 1, symbol="YESBANK"))
    assert (unpriced.json()["status"], unpriced.json()["reason"]) == (
        "REJECTED",
        "no_reference_price",
    )
    send(redis_url, market_buy("nopx-bus", 1, symbol="YESBANK"))
    assert rejected_by_bus(broker, "nopx-bus")["reason"] == "no_reference_price"

    # a MARKET order within the limit still goes
    small = broker.post("/orders", market_buy("small-mkt", 1))
    assert small.json()["status"] == "OPEN", small.text
    assert len(kitesim.orders_tagged("small-mkt")) == 1
    for coid in ("huge-http", "huge-bus", "nopx-http", "nopx-bus"):
        assert kitesim.orders_tagged(coid) == []


def test_open_market_orders_count_toward_the_live_capital_cap(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker: Broker = start_broker(**LIVE_CAP_100000)
    broker.login(kitesim)
    ltp = Decimal(str(kitesim.client().ltp("NSE:RELIANCE")["NSE:RELIANCE"]["last_price"]))
    worst = ltp * Decimal("1.03")  # the reference widened by the market protection

    def shares(rupees: int) -> int:
        return int((Decimal(rupees) / worst).to_integral_value(ROUND_FLOOR))

    first = broker.post("/orders", market_buy("cap-open", shares(65_000)))
    assert first.json()["status"] == "OPEN", first.text  # kitesim's clock is paused: it rests

    # 65,000 open + 45,000 more > 1,00,000: refused by HTTP and by the bus, never sent
    over = broker.post("/orders", market_buy("cap-over-http", shares(45_000)))
    assert (over.json()["status"], over.json()["reason"]) == ("REJECTED", "capital_cap")
    send(redis_url, market_buy("cap-over-bus", shares(45_000)))
    assert rejected_by_bus(broker, "cap-over-bus")["reason"] == "capital_cap"
    for coid in ("cap-over-http", "cap-over-bus"):
        assert kitesim.orders_tagged(coid) == []

    # the open MARKET order was what blocked it: cancelled, the same order fits
    cancelled = httpx.delete(f"{broker.url}/orders/cap-open", headers=AUTH, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    wait_until(lambda: broker.order("cap-open")["status"] == "CANCELLED", message="cancelled")
    again = broker.post("/orders", market_buy("cap-after", shares(45_000)))
    assert again.json()["status"] == "OPEN", again.text
    assert len(kitesim.orders_tagged("cap-after")) == 1


def test_buys_sent_together_count_toward_the_live_capital_cap_one_after_another(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    """Three MARKET buys of ~Rs 40,000 published at once (one bus read at the broker: their
    guards pass in one go and their rows are one transaction) under a live cap of Rs 1,00,000:
    the first two fit and are placed; the third would commit ~1,20,000 and is rejected
    `capital_cap` without reaching Kite, as if they had come one by one."""
    broker: Broker = start_broker(**LIVE_CAP_100000)
    broker.login(kitesim)
    ltp = Decimal(str(kitesim.client().ltp("NSE:RELIANCE")["NSE:RELIANCE"]["last_price"]))
    qty = int((Decimal(40_000) / (ltp * Decimal("1.03"))).to_integral_value(ROUND_FLOOR))
    coids = ["cap-read-1", "cap-read-2", "cap-read-3"]
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC, as the engine publishes
            for coid in coids:
                message = PlaceOrder.model_validate(market_buy(coid, qty))
                pipe.xadd(ORDERS_COMMANDS, Envelope.wrap(message, source="engine").to_fields())
            pipe.execute()
    finally:
        client.close()

    assert rejected_by_bus(broker, "cap-read-3")["reason"] == "capital_cap"
    for coid in coids[:2]:
        wait_until(lambda c=coid: broker.order(c).get("status") == "OPEN", message=f"{coid} open")
        assert len(kitesim.orders_tagged(coid)) == 1
    assert kitesim.orders_tagged("cap-read-3") == []
