"""An MIS position's stop at the exchange, through real processes: kitesim (manual clock), the
broker logged in to it, the portfolio and the engine, on a real Redis. The engine trades
`swing` on minute bars built from kitesim's own prices (published on `market.bars.minute` as
the data service would); its entry fills at kitesim, and its stop goes to kitesim as an SL-M.

* flatten: the engine's exit is held until the broker reports the SL-M cancelled, then goes
  out, with kitesim losing the cancel's answer and failing a call on the way; kitesim's books
  end flat (an MIS sell past the position would be a short there);
* the engine is SIGKILLed with the SL-M resting; kitesim's replay crosses the stop and the
  SL-M sells; the restarted engine and the portfolio's ledger see the position closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from engine_stack import AUTH, Owners, common_env, start_owners

from dalal_shared.messages import Bar, CancelOrder, Envelope, OrderCancelled, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, wait_until

pytestmark = pytest.mark.slow
SYMBOL = "INFY"
STREAM = "market.bars.minute"
CONFIG = f"""
name: mis
strategy: swing
interval: minute
product: MIS
universe: [{SYMBOL}]
params:
  trend_sma_bars: 5
  entry_mode: breakout
  breakout_bars: 5
  atr_bars: 5
  stop_atr_multiple: 1.5
  time_stop_bars: 500
exchange_stop: true
"""


def sim_state(owners: Owners) -> dict[str, Any]:
    r = httpx.get(f"{owners.kitesim.base_url}/_sim/state", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def advance(owners: Owners, seconds: int) -> None:
    r = httpx.post(
        f"{owners.kitesim.base_url}/_sim/clock/advance",
        json={"seconds": seconds},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text


def last_price(owners: Owners) -> Decimal:
    r = httpx.get(
        f"{owners.broker.base_url}/quote", params={"symbols": SYMBOL}, headers=AUTH, timeout=10
    )
    assert r.status_code == 200, r.text
    (quote,) = r.json()["quotes"]
    return Decimal(str(quote["last_price"]))


def breakout_bars(price: Decimal, now: datetime) -> list[Bar]:
    """30 quiet minute bars rising to `price`, the last one closing above all before it (a
    breakout over the trend), the last one ending at kitesim's `now`. Ranges of 0.1% make
    an ATR of about that, so the stop sits ~0.15% under the price."""
    bars = []
    n = 30
    for k in range(n):
        close = price * (Decimal("0.990") + Decimal("0.0002") * k)
        if k == n - 1:
            close = price
        tick = Decimal("0.05")
        close = (close / tick).quantize(Decimal(1)) * tick
        spread = (price * Decimal("0.0005") / tick).quantize(Decimal(1)) * tick
        bars.append(
            Bar(
                symbol=SYMBOL,
                interval="minute",
                start=now - timedelta(minutes=n - k),
                open=close - spread / 2,
                high=close + spread,
                low=close - spread,
                close=close,
                volume=10_000,
            )
        )
    return bars


def start_engine(
    processes: ServiceProcesses, owners: Owners, redis_url: str, tmp_path: Path
) -> ServiceProcess:
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    env = {
        **common_env(redis_url),
        **owners.engine_env(),
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml"),
        "DALAL_MARKET_CLOCK": "exchange",  # the bars' time: kitesim's simulated day
        "DALAL_CONSUMER_NAME": "engine-0",
        "DALAL_START_MODE": "running",
    }
    return processes.start("dalal_engine", env, name="engine")


def engine_status(engine: ServiceProcess) -> dict[str, Any]:
    return httpx.get(f"{engine.base_url}/engine/status", headers=AUTH, timeout=10).json()


def broker_order(owners: Owners, coid: str) -> dict[str, Any] | None:
    r = httpx.get(f"{owners.broker.base_url}/orders/{coid}", headers=AUTH, timeout=10)
    return r.json() if r.status_code == 200 else None


def kitesim_net(owners: Owners) -> int:
    """The MIS quantity kitesim holds for the symbol (negative: a short)."""
    r = httpx.get(f"{owners.broker.base_url}/positions", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return sum(
        int(p["quantity"])
        for p in r.json()["net"]
        if p["tradingsymbol"] == SYMBOL and p["product"] == "MIS"
    )


def commands(client: redis.Redis) -> list[tuple[bytes, Any]]:
    return [(i, Envelope.from_fields(f).message) for i, f in client.xrange(ORDERS_COMMANDS)]


def enter_protected(
    processes: ServiceProcesses, owners: Owners, redis_url: str, tmp_path: Path
) -> tuple[ServiceProcess, PlaceOrder, PlaceOrder]:
    """The engine enters on the bars, the entry fills at kitesim, the SL-M rests there."""
    client = redis.Redis.from_url(redis_url)
    engine = start_engine(processes, owners, redis_url, tmp_path)
    wait_until(lambda: engine_status(engine)["safety_state_known"], message="safety known")
    advance(owners, 3600)  # 10:15: the bars below lie in the session
    now = datetime.fromisoformat(sim_state(owners)["now"])
    pipe = client.pipeline(transaction=False)
    for bar in breakout_bars(last_price(owners), now):
        pipe.xadd(STREAM, Envelope.wrap(bar, source="test").to_fields())
    pipe.execute()

    def placed(leg: str) -> PlaceOrder | None:
        for _id, m in commands(client):
            if isinstance(m, PlaceOrder) and m.client_order_id.startswith(f"{leg}-"):
                return m
        return None

    entry = wait_until(lambda: placed("E"), timeout=60, message="the engine's entry")
    assert (entry.side, entry.product) == ("BUY", "MIS")

    def filled() -> bool:
        advance(owners, 60)  # kitesim fills MARKET orders on its next tick
        row = broker_order(owners, entry.client_order_id)
        return row is not None and row["status"] == "COMPLETE"

    wait_until(filled, timeout=60, message="the entry filled at kitesim")
    slm = wait_until(lambda: placed("P1"), timeout=60, message="the SL-M sent")
    assert (slm.order_type, slm.side, slm.product, slm.quantity) == (
        "SL-M",
        "SELL",
        "MIS",
        entry.quantity,
    )
    wait_until(
        lambda: (
            (broker_order(owners, slm.client_order_id) or {}).get("status") == "TRIGGER PENDING"
        ),
        timeout=60,
        message="the SL-M resting at kitesim",
    )
    assert kitesim_net(owners) == entry.quantity
    return engine, entry, slm


def test_flatten_waits_for_the_sl_m_to_be_cancelled_and_ends_flat_at_kitesim(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    owners = start_owners(service_processes, redis_url, tmp_path)
    engine, entry, slm = enter_protected(service_processes, owners, redis_url, tmp_path)
    client = redis.Redis.from_url(redis_url)

    # Kite misbehaves on the way: the cancel is taken but its answer lost, and a 503
    for fault in (
        {"kind": "timeout_after_accept", "route": "orders", "seconds": 2},
        {"kind": "status", "status": 503, "route": "orders"},
    ):
        f = httpx.post(f"{owners.kitesim.base_url}/_sim/faults", json=fault, headers=AUTH)
        assert f.status_code == 200, f.text
    r = httpx.post(f"{engine.base_url}/engine/flatten", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    (exit_id,) = r.json()["flatten"]["exits"]
    # held: it goes once the broker reports the SL-M cancelled
    assert r.json()["flatten"]["exits_waiting_for_stop_cancel"] == [exit_id]

    def exit_placed() -> tuple[bytes, PlaceOrder] | None:
        for i, m in commands(client):
            if isinstance(m, PlaceOrder) and m.client_order_id == exit_id:
                return i, m
        return None

    def done() -> bool:
        # the market stands still until the exit is at the broker (after the SL-M's cancel):
        # moved meanwhile, it could cross the stop first, the path test_exchange_stops_mis
        # covers (the held exit is dropped)
        if broker_order(owners, exit_id) is None:
            return False
        advance(owners, 60)
        row = broker_order(owners, exit_id)
        return row is not None and row["status"] == "COMPLETE"

    wait_until(done, timeout=90, message="the exit filled at kitesim")
    placed = exit_placed()
    assert placed is not None
    exit_entry_id, exit_order = placed
    assert exit_order.quantity == entry.quantity
    # the SL-M's cancel went first, and the exit only after the broker reported it cancelled
    (cancel_id,) = [
        i
        for i, m in commands(client)
        if isinstance(m, CancelOrder) and m.client_order_id == slm.client_order_id
    ][:1]
    cancelled = [
        i
        for i, f in client.xrange(ORDERS_EVENTS)
        if isinstance(m := Envelope.from_fields(f).message, OrderCancelled)
        and m.client_order_id == slm.client_order_id
    ]
    assert cancelled, "the broker reported the SL-M cancelled"
    assert cancel_id < cancelled[0] < exit_entry_id
    assert (broker_order(owners, slm.client_order_id) or {})["status"] == "CANCELLED"
    assert kitesim_net(owners) == 0  # flat: never short
    wait_until(lambda: engine_status(engine)["open_positions"] == [], message="engine flat")


def test_the_sl_m_sells_while_the_engine_is_killed_and_the_restart_sees_it_closed(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    owners = start_owners(service_processes, redis_url, tmp_path)
    engine, entry, slm = enter_protected(service_processes, owners, redis_url, tmp_path)
    engine.kill()  # SIGKILL: nothing of Dalal's engine watches the stop now

    def sold() -> bool:
        advance(owners, 300)
        row = broker_order(owners, slm.client_order_id)
        assert row is not None and row["status"] not in ("CANCELLED", "REJECTED"), row
        return row["status"] == "COMPLETE"

    wait_until(sold, timeout=120, interval=0.2, message="kitesim's replay crossed the stop")
    assert kitesim_net(owners) == 0

    engine = start_engine(service_processes, owners, redis_url, tmp_path)
    wait_until(
        lambda: engine_status(engine)["open_positions"] == [],
        timeout=60,
        message="the restarted engine saw the SL-M's fills",
    )

    def round_trip() -> dict[str, Any] | None:
        r = httpx.get(
            f"{owners.portfolio.base_url}/trades",
            params={"symbol": SYMBOL},
            headers=AUTH,
            timeout=10,
        )
        trips = r.json()["trades"]
        return trips[0] if trips else None

    trip = wait_until(round_trip, timeout=60, message="the ledger closed the position")
    assert (trip["quantity"], trip["direction"]) == (entry.quantity, "LONG")
    assert [e["quantity"] for e in trip["exits"]] == [entry.quantity]
    assert trip["exits"][0]["reason"] == f"stop at the exchange (SL-M) ({slm.client_order_id})"
    assert kitesim_net(owners) == 0
    # nothing was sold twice: the only sell at the broker is the SL-M
    r = httpx.get(f"{owners.broker.base_url}/orders", headers=AUTH, timeout=10)
    sells = [o for o in r.json() if o["side"] == "SELL" and o["status"] == "COMPLETE"]
    assert [o["client_order_id"] for o in sells] == [slm.client_order_id]


def test_an_engine_killed_while_its_exit_waits_for_the_cancel_ends_flat_after_restart(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    owners = start_owners(service_processes, redis_url, tmp_path)
    engine, entry, slm = enter_protected(service_processes, owners, redis_url, tmp_path)
    r = httpx.post(f"{engine.base_url}/engine/flatten", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    (exit_id,) = r.json()["flatten"]["exits"]
    engine.kill()  # SIGKILL with the exit held and the SL-M's cancel on its way

    engine = start_engine(service_processes, owners, redis_url, tmp_path)

    def done() -> bool:
        # the market stands still until the exit is at the broker (after the SL-M's cancel):
        # moved meanwhile, it could cross the stop first, the path test_exchange_stops_mis
        # covers (the held exit is dropped)
        if broker_order(owners, exit_id) is None:
            return False
        advance(owners, 60)
        row = broker_order(owners, exit_id)
        return row is not None and row["status"] == "COMPLETE"

    wait_until(done, timeout=90, message="the exit, released after the restart, filled")
    assert (broker_order(owners, exit_id) or {})["filled_quantity"] == entry.quantity
    assert (broker_order(owners, slm.client_order_id) or {})["status"] == "CANCELLED"
    assert kitesim_net(owners) == 0
    wait_until(lambda: engine_status(engine)["open_positions"] == [], message="engine flat")
