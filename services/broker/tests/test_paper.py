"""DALAL_MODE=paper: the broker fills orders itself from `market.ticks` through the shared fill
model, with the kite adapter's journal, events, idempotency, modify and cancel. A real broker
process on a real Redis; no Kite at all (the root URL points at a closed port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from dalal_broker.gtt_terms import stop_limit
from dalal_shared import fills
from dalal_shared.messages import Envelope, PlaceOrder, ProtectPosition, Tick
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS
from dalal_shared.testing import ServiceProcesses, free_port, wait_until
from dalal_shared.timeutil import IST

from .conftest import API_KEY, AUTH, Broker, events, metric

MODEL = fills.FillConfig()  # the broker's paper settings are the model's defaults
T0 = datetime(2026, 11, 26, 10, 0, 5, tzinfo=IST)


def ask(price: str, *, market: bool) -> Decimal:
    return fills.quote_price(fills.Side.BUY, Decimal(price), MODEL, market=market)


def bid(price: str, *, market: bool) -> Decimal:
    return fills.quote_price(fills.Side.SELL, Decimal(price), MODEL, market=market)


class Market:
    """Publishes ticks as the data service does (Tick envelopes on `market.ticks`)."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)

    def tick(self, symbol: str, price: str, *, volume: int = 0, at: datetime = T0) -> None:
        tick = Tick(
            instrument_token=abs(hash(symbol)) % 1_000_000,
            symbol=symbol,
            last_price=Decimal(price),
            volume=volume,
            exchange_ts=at,
        )
        self.client.xadd(MARKET_TICKS, Envelope.wrap(tick, source="data").to_fields())

    def command(self, command: PlaceOrder | ProtectPosition) -> None:
        self.client.xadd(ORDERS_COMMANDS, Envelope.wrap(command, source="engine").to_fields())


def order(coid: str, symbol: str, side: str, qty: int, order_type: str, price: str | None = None):
    body: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": symbol,
        "side": side,
        "quantity": qty,
        "order_type": order_type,
        "product": "CNC",
    }
    if price is not None:
        body["price"] = price
    return body


def starter(redis_url: str, processes: ServiceProcesses, **env: str) -> Callable[[], Broker]:
    db = processes.log_dir / "broker.sqlite3"

    def start() -> Broker:
        proc = processes.start(
            "dalal_broker",
            {
                "DALAL_MODE": "paper",
                "DALAL_REDIS_URL": redis_url,
                "DALAL_API_KEY": API_KEY,
                "DALAL_KITE_ROOT_URL": f"http://127.0.0.1:{free_port()}",  # nobody there
                "DALAL_KITE_API_KEY": "paper_key",
                "DALAL_KITE_TIMEOUT_SECONDS": "1",
                "DALAL_DATABASE_URL": f"sqlite:///{db}",
                "DALAL_ENFORCE_MARKET_HOURS": "false",
                "DALAL_LEASE_TTL_SECONDS": "2",
                "DALAL_POLL_INTERVAL_SECONDS": "0.3",
                "DALAL_BUS_BLOCK_MS": "100",
                "DALAL_LOG_FORMAT": "json",
                **env,
            },
            name="paper-broker",
        )
        broker = Broker(proc)
        wait_until(lambda: broker.get("/status").json()["leader"], message="broker leads")
        return broker

    return start


@pytest.fixture(scope="module")
def paper_redis_url(redis_server_url: str) -> str:
    url = redis_server_url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="module")
def paper(paper_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    processes = ServiceProcesses(tmp_path_factory.mktemp("paper"))
    yield starter(paper_redis_url, processes)()
    processes.stop_all()


@pytest.fixture
def market(paper_redis_url: str) -> Iterator[Market]:
    m = Market(paper_redis_url)
    yield m
    m.client.close()


def settled(broker: Broker, coid: str, status: str, filled: int | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        o = broker.order(coid)
        ok = o.get("status") == status and (filled is None or o["filled_quantity"] == filled)
        return o if ok else None

    return wait_until(check, message=f"{coid} {status} {filled}")


def fills_of(url: str, coid: str) -> list[Any]:
    return [e.message for e in events(url, coid=coid) if e.type == "OrderFilled"]


def test_market_and_limit_orders_fill_at_the_model_prices(paper, market, paper_redis_url) -> None:
    market.tick("INFY", "1500")  # before the orders: they meet only later ticks
    placed = paper.post("/orders", order("pm-1", "INFY", "BUY", 10, "MARKET"))
    assert placed.status_code == 200, placed.text
    assert placed.json()["status"] == "OPEN"
    assert placed.json()["broker_order_id"].startswith("paper-")
    resting = paper.post("/orders", order("pl-1", "INFY", "BUY", 5, "LIMIT", "1490"))
    crossing = paper.post("/orders", order("pl-2", "INFY", "SELL", 3, "LIMIT", "1400"))
    assert resting.json()["status"] == crossing.json()["status"] == "OPEN"
    assert fills_of(paper_redis_url, "pm-1") == []

    market.tick("INFY", "1500")
    done = settled(paper, "pm-1", "COMPLETE", 10)
    expected = ask("1500", market=True)  # the ask plus slippage: 1500.30
    assert expected == Decimal("1500.30")
    assert Decimal(done["average_price"]) == expected
    [fill] = fills_of(paper_redis_url, "pm-1")
    assert (fill.quantity, fill.price, fill.side) == (10, expected, "BUY")
    assert fill.filled_at == T0
    sold = settled(paper, "pl-2", "COMPLETE", 3)  # marketable: the bid, better than its limit
    assert Decimal(sold["average_price"]) == bid("1500", market=False) == Decimal("1499.85")
    assert paper.order("pl-1")["status"] == "OPEN"  # 1500 is above its limit

    market.tick("INFY", "1489.50", at=T0 + timedelta(seconds=5))
    filled = settled(paper, "pl-1", "COMPLETE", 5)
    assert Decimal(filled["average_price"]) == Decimal("1490")  # a resting limit: its price
    assert [t["quantity"] for t in filled["trades"]] == [5]
    assert filled["charges"] is not None and Decimal(filled["charges"]) > 0

    kinds = [e.type for e in events(paper_redis_url, coid="pm-1")]
    assert kinds == ["OrderAccepted", "OrderFilled", "OrderUpdated"]
    [updated] = [
        e.message for e in events(paper_redis_url, coid="pm-1") if e.type == "OrderUpdated"
    ]
    assert (updated.status, updated.filled_quantity, updated.average_price) == (
        "COMPLETE",
        10,
        expected,
    )


def test_partial_fills_when_the_model_caps_participation(paper, market, paper_redis_url) -> None:
    # Kite's volume is cumulative for the day: a tick's traded volume is the rise since the last
    market.tick("TCS", "4000", volume=100_000, at=T0)
    market.command(PlaceOrder.model_validate(order("pp-1", "TCS", "BUY", 20, "MARKET")))
    settled(paper, "pp-1", "OPEN")

    market.tick("TCS", "4000", volume=100_050, at=T0 + timedelta(seconds=5))  # 50 traded
    part = settled(paper, "pp-1", "OPEN", 5)  # 10% of the minute's 50 shares
    assert part["status"] == "OPEN"
    market.tick("TCS", "4001", volume=100_100, at=T0 + timedelta(seconds=10))  # minute: 100
    settled(paper, "pp-1", "OPEN", 10)  # 10% of 100, less the 5 taken
    market.tick("TCS", "4002", volume=101_000, at=T0 + timedelta(minutes=1))  # a new minute
    done = settled(paper, "pp-1", "COMPLETE", 20)

    got = fills_of(paper_redis_url, "pp-1")
    assert [f.quantity for f in got] == [5, 5, 10]
    assert [f.price for f in got] == [
        ask("4000", market=True),
        ask("4001", market=True),
        ask("4002", market=True),
    ]
    assert len({f.trade_id for f in got}) == 3
    average = sum(f.price * f.quantity for f in got) / 20
    assert Decimal(done["average_price"]) == average.quantize(Decimal("0.01"))
    updates = [e.message for e in events(paper_redis_url, coid="pp-1") if e.type == "OrderUpdated"]
    assert [(u.status, u.filled_quantity) for u in updates] == [
        ("OPEN", 5),
        ("OPEN", 10),
        ("COMPLETE", 20),
    ]


def test_cancel_and_modify_an_open_limit(paper, market, paper_redis_url) -> None:
    market.tick("SBIN", "800")
    a = paper.post("/orders", order("pc-1", "SBIN", "BUY", 4, "LIMIT", "700"))
    b = paper.post("/orders", order("pc-2", "SBIN", "BUY", 4, "LIMIT", "700"))
    assert a.json()["status"] == b.json()["status"] == "OPEN"

    gone = httpx.delete(f"{paper.url}/orders/pc-1", headers=AUTH, timeout=30)
    assert gone.status_code == 200, gone.text
    settled(paper, "pc-1", "CANCELLED", 0)
    assert "OrderCancelled" in [e.type for e in events(paper_redis_url, coid="pc-1")]
    again = httpx.delete(f"{paper.url}/orders/pc-1", headers=AUTH, timeout=30)
    assert (again.status_code, again.json()["error"]) == (409, "order_closed")

    moved = httpx.patch(f"{paper.url}/orders/pc-2", json={"price": "900"}, headers=AUTH, timeout=30)
    assert moved.status_code == 200, moved.text
    assert moved.json()["price"] == "900"
    market.tick("SBIN", "800", at=T0 + timedelta(seconds=1))
    done = settled(paper, "pc-2", "COMPLETE", 4)
    # modified to a marketable price: it meets the tick as a new arrival, at the ask
    assert Decimal(done["average_price"]) == ask("800", market=False) == Decimal("800.10")
    assert fills_of(paper_redis_url, "pc-1") == []
    assert paper.order("pc-1")["status"] == "CANCELLED"


def test_the_same_client_order_id_twice_is_one_order(paper, market, paper_redis_url) -> None:
    body = order("pd-1", "ITC", "BUY", 2, "LIMIT", "100")
    first = paper.post("/orders", body).json()
    second = paper.post("/orders", body).json()
    assert first["broker_order_id"] == second["broker_order_id"]
    command = PlaceOrder.model_validate(order("pd-2", "ITC", "BUY", 2, "LIMIT", "100"))
    market.command(command)
    market.command(command)
    settled(paper, "pd-2", "OPEN")
    market.tick("ITC", "450")
    market.tick("ITC", "99", at=T0 + timedelta(seconds=1))
    for coid in ("pd-1", "pd-2"):
        settled(paper, coid, "COMPLETE", 2)
        kinds = [e.type for e in events(paper_redis_url, coid=coid)]
        assert kinds.count("OrderAccepted") == 1 and kinds.count("OrderFilled") == 1
    listed = [o for o in paper.get("/orders").json() if o["client_order_id"] in ("pd-1", "pd-2")]
    assert len(listed) == 2
    assert paper.get("/reconcile").json()["ok"]
    # closed and journaled: the paper book lets them go (it holds only what is live)
    wait_until(lambda: metric(paper, "dalal_broker_paper_book_orders") == 0, message="book pruned")


def test_paper_orders_survive_a_restart(redis_url, service_processes) -> None:
    start = starter(redis_url, service_processes)
    market = Market(redis_url)
    try:
        broker = start()
        market.tick("LT", "3500", volume=1_000)
        assert broker.post("/orders", order("pr-1", "LT", "BUY", 20, "LIMIT", "3490")).json()[
            "status"
        ] == ("OPEN")
        market.tick("LT", "3480", volume=1_050, at=T0 + timedelta(seconds=1))  # 50 traded
        settled(broker, "pr-1", "OPEN", 5)
        broker.proc.stop()

        again = start()
        assert again.order("pr-1")["status"] == "OPEN"
        market.tick("LT", "3489", at=T0 + timedelta(minutes=2))
        done = settled(again, "pr-1", "COMPLETE", 20)
        got = fills_of(redis_url, "pr-1")
        first_price = ask("3480", market=False)  # arrival: the ask, below its limit
        assert [(f.quantity, f.price) for f in got] == [(5, first_price), (15, Decimal("3490"))]
        assert len({f.trade_id for f in got}) == 2
        assert [t["quantity"] for t in done["trades"]] == [5, 15]
    finally:
        market.client.close()


def test_a_paper_stop_at_the_exchange_fires_on_the_ticks_after_a_crash(
    redis_url, service_processes
) -> None:
    """Paper mode keeps protective GTTs in its own book with Kite's behaviour: placed from the
    bus, modified in place over HTTP, kept across a SIGKILL, fired by the tick that crosses the
    stop, its untagged LIMIT order journaled under the protection's id and filled."""
    start = starter(redis_url, service_processes, DALAL_PROTECTION_CHECK_SECONDS="0.3")
    market = Market(redis_url)
    try:
        broker = start()
        market.tick("LT", "3500", volume=1_000)
        assert broker.post("/orders", order("pg-buy", "LT", "BUY", 20, "MARKET")).status_code == 200
        market.tick("LT", "3501", at=T0 + timedelta(seconds=1))
        settled(broker, "pg-buy", "COMPLETE", 20)

        market.command(
            ProtectPosition(
                client_order_id="pg-stop", symbol="LT", quantity=20, stop_price=Decimal("3400")
            )
        )
        placed = wait_until(
            lambda: (
                (r := broker.get("/protections/pg-stop")).status_code == 200
                and r.json()["status"] == "ACTIVE"
                and r.json()
            ),
            message="the paper GTT is active",
        )
        gtt_id = placed["gtt_id"]
        body = {"client_order_id": "pg-stop", "symbol": "LT", "quantity": 20, "stop_price": "3420"}
        moved = broker.post("/protections", body).json()
        assert (moved["status"], moved["gtt_id"], moved["stop_price"]) == ("ACTIVE", gtt_id, "3420")

        market.tick("LT", "3421", at=T0 + timedelta(seconds=2))  # above the stop: nothing
        assert broker.get("/protections/pg-stop").json()["status"] == "ACTIVE"
        assert broker.get("/orders/pg-stop").status_code == 404
        broker.proc.kill()

        again = start()
        assert again.get("/protections/pg-stop").json()["status"] == "ACTIVE"
        market.tick("LT", "3419", at=T0 + timedelta(minutes=1))  # crosses the stop
        done = wait_until(
            lambda: (
                (o := again.get("/orders/pg-stop")).status_code == 200
                and o.json()["status"] == "COMPLETE"
                and o.json()
            ),
            message="the fired GTT's order journaled under the protection's id and filled",
        )
        limit = stop_limit(Decimal("3420"), Decimal("3"))  # the broker's market protection
        assert (done["side"], done["filled_quantity"], done["reason"]) == ("SELL", 20, "gtt")
        assert Decimal(done["price"]) == limit
        assert Decimal(done["average_price"]) == bid("3419", market=False)  # above its limit
        shown = again.get("/protections/pg-stop").json()
        assert (shown["status"], shown["gtt_id"]) == ("TRIGGERED", gtt_id)
        seen = events(redis_url, coid="pg-stop")
        assert [e.message.reason for e in seen if e.type == "ProtectionRemoved"] == ["triggered"]
        assert sum(f.quantity for f in fills_of(redis_url, "pg-stop")) == 20
        # a cancel after it fired changes nothing, and a fired stop never fires twice
        market.tick("LT", "3300", at=T0 + timedelta(minutes=2))
        assert again.get("/orders/pg-stop").json()["filled_quantity"] == 20
        assert sorted(o["client_order_id"] for o in again.get("/orders").json()) == [
            "pg-buy",
            "pg-stop",
        ]
    finally:
        market.client.close()
