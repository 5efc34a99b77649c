"""The broker against kitesim through the official client: exactly-once orders, tracking,
faults, session expiry, postbacks, the kill switch, instruments and reconciliation."""

from __future__ import annotations

import contextlib
import signal

import httpx
import redis

from dalal_shared.bus import Publisher
from dalal_shared.messages import Envelope, OrderFilled, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until

from .conftest import AUTH, Sim, checksum, events, metric, system_events


def limit_buy(coid: str, symbol: str = "RELIANCE", qty: int = 2, price: str = "9000") -> dict:
    # far above any 2024 price: a BUY LIMIT crosses at the next tick
    return {
        "client_order_id": coid,
        "symbol": symbol,
        "side": "BUY",
        "quantity": qty,
        "order_type": "LIMIT",
        "price": price,
        "product": "CNC",
    }


def commands_consumed(redis_url: str) -> bool:
    """The broker's group has read up to the last command and acknowledged all it read."""
    client = redis.Redis.from_url(redis_url)
    try:
        [(last_id, _)] = client.xrevrange(ORDERS_COMMANDS, count=1)
        group = next(g for g in client.xinfo_groups(ORDERS_COMMANDS) if g["name"] == b"broker")
    finally:
        client.close()
    return group["last-delivered-id"] == last_id and group["pending"] == 0


def test_without_login_orders_are_refused_with_no_session(start_broker, redis_url) -> None:
    broker = start_broker()
    assert broker.get("/session").json()["valid"] is False
    resp = broker.post("/orders", limit_buy("nosess-1"))
    assert resp.status_code == 200
    assert (resp.json()["status"], resp.json()["reason"]) == ("REJECTED", "no_session")
    [event] = events(redis_url, coid="nosess-1")
    assert event.type == "OrderRejected"
    login = broker.get("/session/login", follow_redirects=False)
    assert login.status_code == 307
    assert "/connect/login?api_key=kitesim_key" in login.headers["location"]


def test_login_place_track_to_fill_exactly_once(broker, kitesim: Sim, shared_redis_url) -> None:
    assert "SessionValid" in system_events(shared_redis_url)
    first = broker.post("/orders", limit_buy("fill-1"))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "OPEN" and first.json()["broker_order_id"]
    again = broker.post("/orders", limit_buy("fill-1"))
    assert again.json()["broker_order_id"] == first.json()["broker_order_id"]
    conflict = broker.post("/orders", limit_buy("fill-1", qty=3))
    assert (conflict.status_code, conflict.json()["error"]) == (409, "conflict")

    kitesim.control("/clock/advance", {"seconds": 120})
    done = wait_until(
        lambda: (o := broker.order("fill-1"))["status"] == "COMPLETE" and o,
        message="order complete",
    )
    assert done["filled_quantity"] == 2
    assert sum(t["quantity"] for t in done["trades"]) == 2
    kinds = [e.type for e in events(shared_redis_url, coid="fill-1")]
    assert kinds[0] == "OrderAccepted"
    assert "OrderFilled" in kinds and kinds[-1] == "OrderUpdated"
    fills = [e.message for e in events(shared_redis_url, coid="fill-1") if e.type == "OrderFilled"]
    assert sum(f.quantity for f in fills) == 2
    assert all(isinstance(f, OrderFilled) and f.price > 0 for f in fills)
    assert len({f.trade_id for f in fills}) == len(fills)
    assert len(kitesim.orders_tagged("fill-1")) == 1
    # the journal agrees with Kite
    rec = broker.get("/reconcile").json()
    assert rec["ok"], rec["breaks"]


async def test_the_same_command_twice_on_the_bus_places_one_order(
    broker, kitesim: Sim, shared_redis_url
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(shared_redis_url)
    command = PlaceOrder.model_validate(limit_buy("bus-dup-1", symbol="TCS", qty=1, price="9000"))
    pub = Publisher(client, source="engine")
    await pub.publish(ORDERS_COMMANDS, command)
    await pub.publish(ORDERS_COMMANDS, command)
    wait_until(
        lambda: (
            broker.get("/orders/bus-dup-1").status_code == 200
            and broker.order("bus-dup-1")["status"] != "PENDING"
        ),
        message="placed",
    )

    wait_until(lambda: commands_consumed(shared_redis_url), message="both commands consumed")
    assert len(kitesim.orders_tagged("bus-dup-1")) == 1
    shown = broker.order("bus-dup-1")
    assert shown["created_at"].endswith("+05:30") and shown["updated_at"].endswith("+05:30")
    await client.aclose()


def test_broker_killed_between_send_and_reply_places_exactly_one_order(
    start_broker, kitesim: Sim, redis_url
) -> None:
    broker = start_broker(DALAL_KITE_TIMEOUT_SECONDS="60")
    broker.login(kitesim)
    # kitesim accepts the next order but holds the reply for 30 s
    kitesim.control("/faults", {"kind": "timeout_after_accept", "seconds": 30, "route": "orders"})
    # the broker gets stuck waiting for Kite's reply, as intended: our request times out
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(
            f"{broker.url}/orders",
            json=limit_buy("kill-1", symbol="INFY", qty=1),
            headers=AUTH,
            timeout=2,
        )
    wait_until(lambda: kitesim.orders_tagged("kill-1"), message="order reached kitesim")
    assert broker.order("kill-1")["status"] == "PENDING"  # journaled before the send
    broker.proc.signal(signal.SIGKILL)
    broker.proc.process.wait()

    restarted = start_broker(DALAL_KITE_TIMEOUT_SECONDS="5")
    after = wait_until(
        lambda: (o := restarted.order("kill-1"))["status"] != "PENDING" and o,
        message="recovered",
        timeout=40,
    )
    assert after["status"] == "OPEN"  # kitesim's clock is paused: the limit rests
    [at_kite] = kitesim.orders_tagged("kill-1")
    assert after["broker_order_id"] == at_kite["order_id"]


def test_injected_5xx_and_429_never_duplicate(broker, kitesim: Sim) -> None:
    kitesim.control(
        "/faults", {"kind": "status", "status": 502, "count": 1, "route": "orders", "html": True}
    )
    kitesim.control("/faults", {"kind": "status", "status": 429, "count": 1, "route": "orders"})
    resp = broker.post("/orders", limit_buy("flaky-1", symbol="SBIN", qty=1, price="2000"))
    # OPEN at once, or PENDING when the tracker's polls took the 502 and the look-up before the
    # resend met the 429 (the faults hit whichever call comes next): recovery settles it
    assert resp.json()["status"] in ("OPEN", "PENDING"), resp.text
    settled = wait_until(
        lambda: (o := broker.order("flaky-1"))["status"] != "PENDING" and o,
        timeout=60,
        message="flaky-1 settled",
    )
    assert settled["status"] == "OPEN", settled
    assert len(kitesim.orders_tagged("flaky-1")) == 1
    # every attempt failing: a clear rejection, or (when even the look-up before a resend
    # fails: the tracker's polls and the sends share the injected 503s) an outcome still
    # unknown that recovery resolves once Kite answers; never an order placed twice
    kitesim.control("/faults", {"kind": "status", "status": 503, "count": 50, "route": "orders"})
    gone = broker.post("/orders", limit_buy("flaky-2", symbol="SBIN", qty=1, price="2000"))
    assert gone.json()["status"] in ("REJECTED", "PENDING"), gone.text
    if gone.json()["status"] == "REJECTED":
        assert gone.json()["reason"] == "kite_unavailable"
    httpx.delete(f"{kitesim.root}/_sim/faults")
    final = wait_until(
        lambda: (o := broker.order("flaky-2"))["status"] != "PENDING" and o,
        timeout=60,
        message="the unknown outcome resolved once Kite answers",
    )
    placed = kitesim.orders_tagged("flaky-2")
    assert len(placed) == (0 if final["status"] == "REJECTED" else 1), (final, placed)


def test_kite_rejection_is_final(broker, kitesim: Sim, shared_redis_url) -> None:
    too_big = broker.post("/orders", limit_buy("big-1", qty=1_000_000, price="1000"))
    body = too_big.json()
    assert body["status"] == "REJECTED"
    assert body["reason"] == "max_order_value"  # Rs 100 crore: the broker's guard, not Kite
    assert kitesim.orders_tagged("big-1") == []
    kitesim.control("/orders/reject", {"count": 1, "message": "RMS: blocked"})
    resp = broker.post("/orders", limit_buy("rms-1", symbol="ICICIBANK", qty=1, price="5000"))
    final = wait_until(
        lambda: (o := broker.order("rms-1"))["status"] == "REJECTED" and o, message="rejected"
    )
    # Kite accepts the order, then its RMS rejects it: the order book says so
    assert final["reason"] == "exchange", resp.text
    assert final["message"] == "RMS: blocked"
    assert "OrderRejected" in [e.type for e in events(shared_redis_url, coid="rms-1")]


def test_expired_token_pauses_orders_until_a_new_login(
    start_broker, kitesim: Sim, redis_url
) -> None:
    # polling slowed down: the order itself is what meets the TokenException
    broker = start_broker(DALAL_POLL_INTERVAL_SECONDS="600")
    broker.login(kitesim)
    before = broker.post("/orders", limit_buy("exp-0", symbol="HDFCBANK", qty=1, price="1"))
    assert before.json()["status"] == "OPEN"  # mid-session: trading until the token dies
    kitesim.control("/session/expire")
    first = broker.post("/orders", limit_buy("exp-1", symbol="HDFCBANK", qty=1, price="5000"))
    assert (first.json()["status"], first.json()["reason"]) == ("REJECTED", "session_expired")
    assert "SessionExpired" in system_events(redis_url)
    assert broker.get("/session").json()["valid"] is False
    paused = broker.post("/orders", limit_buy("exp-2", symbol="HDFCBANK", qty=1, price="5000"))
    assert paused.json()["reason"] == "no_session"
    broker.login(kitesim)
    resumed = broker.post("/orders", limit_buy("exp-3", symbol="HDFCBANK", qty=1, price="5000"))
    assert resumed.json()["status"] == "OPEN"
    assert kitesim.orders_tagged("exp-1") == [] and kitesim.orders_tagged("exp-2") == []


def test_postbacks_need_a_valid_checksum(broker, kitesim: Sim) -> None:
    placed = broker.post("/orders", limit_buy("pb-1", symbol="TCS", qty=1, price="1"))
    order_id = placed.json()["broker_order_id"]
    body = {
        "order_id": order_id,
        "order_timestamp": "2024-01-02 09:16:00",
        "status": "OPEN",
        "filled_quantity": 0,
        "pending_quantity": 1,
    }
    bad = httpx.post(f"{broker.url}/postbacks/kite", json={**body, "checksum": "0" * 64})
    assert (bad.status_code, bad.json()["error"]) == (401, "bad_checksum")
    missing = httpx.post(f"{broker.url}/postbacks/kite", json=body)
    assert missing.status_code == 401
    cancelled = {
        **body,
        "status": "CANCELLED",
        "checksum": checksum(order_id, body["order_timestamp"]),
    }
    good = httpx.post(f"{broker.url}/postbacks/kite", json=cancelled)
    assert good.status_code == 200
    assert broker.order("pb-1")["status"] == "CANCELLED"


def test_kill_switch_blocks_orders_and_survives_a_restart(
    start_broker, kitesim: Sim, redis_url
) -> None:
    broker = start_broker()
    broker.login(kitesim)
    unauth = httpx.post(f"{broker.url}/kill-switch/engage", json={"reason": "x"})
    assert unauth.status_code == 401
    assert broker.post("/kill-switch/engage", {"reason": "drawdown"}).json()["engaged"]
    blocked = broker.post("/orders", limit_buy("ks-1"))
    assert (blocked.json()["status"], blocked.json()["reason"]) == ("REJECTED", "kill_switch")
    assert "KillSwitchEngaged" in system_events(redis_url)
    broker.proc.stop()
    again = start_broker()
    assert again.get("/kill-switch").json()["engaged"] is True
    assert again.post("/orders", limit_buy("ks-2")).json()["reason"] == "kill_switch"
    assert again.post("/kill-switch/release").json()["engaged"] is False
    again.login(kitesim)
    assert again.post("/orders", limit_buy("ks-3", qty=1)).json()["status"] == "OPEN"
    assert kitesim.orders_tagged("ks-1") == [] and kitesim.orders_tagged("ks-2") == []


def test_instruments_master_and_changed_symbols(start_broker, kitesim: Sim) -> None:
    broker = start_broker()
    before = broker.get("/instruments", params={"q": "INFY"})
    if before.status_code != 200:  # nothing downloaded yet (no earlier login on this Redis)
        assert (before.status_code, before.json()["error"]) == (503, "instruments_unavailable")
    broker.login(kitesim)
    hits = wait_until(
        lambda: (
            (r := broker.get("/instruments", params={"q": "INFY"})).status_code == 200 and r.json()
        ),
        message="instruments loaded",
    )
    assert hits[0]["tradingsymbol"] == "INFY"
    assert broker.get("/instruments/NSE/RELIANCE").json()["instrument_token"] == 738561
    for symbol in ("HDFC", "ZOMATO"):
        resp = broker.get(f"/instruments/NSE/{symbol}")
        assert (resp.status_code, resp.json()["error"]) == (410, "symbol_changed"), symbol
    unknown = broker.get("/instruments/NSE/NOSUCHCO")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_symbol")


def test_reconcile_reports_an_order_placed_by_hand(broker, kitesim: Sim) -> None:
    broker.post("/orders", limit_buy("rec-1", symbol="INFY", qty=1))
    kitesim.client().place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="TCS",
        transaction_type="BUY",
        quantity=1,
        product="CNC",
        order_type="LIMIT",
        price=1.0,
        tag="by-hand",
    )
    # the test's own Kite client spends the same api key's rate budget as the broker (a user's
    # other script would too): a 429 behind a reconcile is a 503 to retry, never a wrong answer
    answer = wait_until(
        lambda: (r := broker.get("/reconcile")).status_code == 200 and r.json(),
        message="a reconcile answer",
    )
    breaks = answer["breaks"]
    assert any(b["kind"] == "unknown_order" and "TCS" in b["detail"] for b in breaks)


def test_bad_order_input_is_a_4xx(broker) -> None:
    for body in (
        {},
        {"client_order_id": "x", "symbol": "INFY", "side": "BUY", "quantity": 1, "price": "-1"},
        {
            "client_order_id": "way-too-long-client-order-id",
            "symbol": "INFY",
            "side": "BUY",
            "quantity": 1,
        },
    ):
        resp = broker.post("/orders", body)
        assert resp.status_code == 422 and resp.json()["error"] == "validation_error"
    assert broker.get("/orders/none-such").status_code == 404
    bad_login = broker.get("/session/callback", params={"request_token": "bad token!"})
    assert (bad_login.status_code, bad_login.json()["error"]) == (400, "login_failed")


def test_an_http_order_is_on_the_bus_too_and_placed_once(
    broker, kitesim: Sim, shared_redis_url
) -> None:
    """POST /orders writes the command to orders.commands (the portfolio holds its funds as
    for any order); the broker's own consumer finds it placed: one order at Kite. A retry and
    a reused id add nothing to the stream."""
    placed = broker.post("/orders", limit_buy("http-1"))
    assert placed.status_code == 200, placed.text
    assert placed.json()["status"] == "OPEN"
    assert broker.post("/orders", limit_buy("http-1")).status_code == 200
    assert broker.post("/orders", limit_buy("http-1", qty=3)).status_code == 409
    commands = events(shared_redis_url, ORDERS_COMMANDS, coid="http-1")
    assert [c.message for c in commands] == [PlaceOrder(**limit_buy("http-1"))]
    wait_until(
        lambda: (
            metric(
                broker,
                "dalal_bus_messages_handled_total",
                stream=ORDERS_COMMANDS,
                group="broker",
                type="PlaceOrder",
            )
            >= 1
        ),
        timeout=30,
        message="the broker's consumer handled the bus copy",
    )
    assert len(kitesim.orders_tagged("http-1")) == 1
    assert broker.order("http-1")["status"] in ("OPEN", "COMPLETE")


async def test_orders_sent_together_are_each_placed_exactly_once(
    broker, kitesim: Sim, shared_redis_url
) -> None:
    """A minute's orders arrive in one bus read (the engine publishes them at once, in one
    MULTI/EXEC): each gets its own guards and journal row, a refused one holds up nothing,
    and a copy of one in the same read places nothing more."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(shared_redis_url)
    coids = [f"together-{n}" for n in range(4)]
    commands = [
        PlaceOrder.model_validate(limit_buy(coids[0], symbol="INFY", qty=1, price="9000")),
        PlaceOrder.model_validate(limit_buy(coids[1], symbol="TCS", qty=1, price="9000")),
        # worth 90 crore: the value guard refuses it (the others are not held up by it)
        PlaceOrder.model_validate(limit_buy(coids[2], symbol="SBIN", qty=100_000, price="9000")),
        PlaceOrder.model_validate(limit_buy(coids[3], symbol="ITC", qty=1, price="9000")),
    ]
    again = commands[0]  # a copy of the first, in the same read
    await Publisher(client, source="engine").publish_many(
        ORDERS_COMMANDS, [*commands, again], atomic=True
    )
    await client.aclose()

    def settled() -> list[dict] | None:
        rows = [broker.get(f"/orders/{c}") for c in coids]
        if any(r.status_code != 200 or r.json()["status"] == "PENDING" for r in rows):
            return None
        return [r.json() for r in rows]

    rows = wait_until(settled, message="all four journaled and answered")
    assert [r["status"] == "REJECTED" for r in rows] == [False, False, True, False]
    assert rows[2]["reason"] == "max_order_value"
    for coid in (coids[0], coids[1], coids[3]):
        assert len(kitesim.orders_tagged(coid)) == 1
    assert kitesim.orders_tagged(coids[2]) == []

    wait_until(lambda: commands_consumed(shared_redis_url), message="every command acknowledged")
    assert len(kitesim.orders_tagged(coids[0])) == 1  # the copy placed nothing more


def test_commands_a_killed_leader_read_and_never_acknowledged_are_placed_by_its_successor(
    start_broker, kitesim: Sim, redis_url
) -> None:
    """A leader SIGKILLed after its read and before its ack leaves the commands pending on its
    name. Its successor takes them over once the lease lapsed (2 s here), not after the bus's
    30 s claim idle (the wait below is 20 s), and places each exactly once."""
    first = start_broker()
    first.login(kitesim)
    first.proc.kill()
    client = redis.Redis.from_url(redis_url)
    coids = ["orphan-1", "orphan-2"]
    try:
        for coid in coids:
            command = PlaceOrder.model_validate(limit_buy(coid, symbol="INFY", qty=1))
            client.xadd(ORDERS_COMMANDS, Envelope.wrap(command, source="engine").to_fields())
        read = client.xreadgroup("broker", "the-killed-leader", {ORDERS_COMMANDS: ">"})
        assert len(read[0][1]) == 2  # pending on the dead leader's name, never acknowledged
    finally:
        client.close()

    second = start_broker()
    for coid in coids:
        wait_until(
            lambda coid=coid: kitesim.orders_tagged(coid), message=f"{coid} placed at kitesim"
        )
    wait_until(lambda: commands_consumed(redis_url), message="every command acknowledged")
    for coid in coids:
        assert len(kitesim.orders_tagged(coid)) == 1
        assert second.order(coid)["status"] != "PENDING"
