"""Honest sessions (ADR 0005): the broker's view of the Kite session follows the clock kitesim
expires tokens on, and a token kitesim has killed flips `/session` and publishes SessionExpired
without waiting for an order to meet the TokenException.

kitesim runs here with its default token settings (expiry on, wall token clock) or with the
simulated token clock, a process per test, the broker as a real process over real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dalal_shared.bus import wrap_fields
from dalal_shared.messages import KiteSessionRefused
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import ServiceProcess, free_port, wait_until

from .conftest import AUTH, Broker, Sim, metric, system_events

pytestmark = pytest.mark.slow


@pytest.fixture
def kitesim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sim]:
    """kitesim with its default session settings; `indirect` parameters add env."""
    port = free_port()
    env = {
        "DALAL_PORT": str(port),
        "DALAL_KITESIM_SESSION_SECONDS": "0",  # manual clock: the test moves days
        "DALAL_LOG_FORMAT": "json",
        "DALAL_KITESIM_RATE_QUOTE_PER_SECOND": "0",  # the test reads prices beside the broker
        **getattr(request, "param", {}),
    }
    proc = ServiceProcess(
        "dalal_kitesim", env=env, log_path=tmp_path / "kitesim.log", port=port
    ).start()
    try:
        proc.wait_healthy(timeout=60)
        sim = Sim(proc)
        sim.control("/clock/advance", {"seconds": 60})
        yield sim
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def _no_faults_left() -> None:
    """(the package's fault clean-up reads a module-scoped kitesim; this one is per test)"""


class KeyedBroker(Broker):
    """The broker read with the API key (reads may need a key)."""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, headers=AUTH, **kw)


def start(start_broker: Callable[..., Broker]) -> Broker:
    """A broker that checks its session every half second."""
    broker = KeyedBroker(start_broker(wait_leader=False, DALAL_SESSION_CHECK_SECONDS="0.5").proc)
    wait_until(lambda: broker.get("/status").json()["leader"], message="broker leads")
    return broker


def kitesim_says_valid(sim: Sim) -> bool:
    """kitesim's own view: a live (unexpired) session of the user on its token clock."""
    return any(s["user_id"] == "KS0001" for s in sim.control("/state", method="GET")["sessions"])


def crossing_buy(sim: Sim, coid: str, symbol: str = "RELIANCE") -> dict:
    """A 1-share CNC LIMIT buy 2% above the last price: it fills at the next tick."""
    kite = sim.client() if sim._inspector is None else sim._inspector
    sim._inspector = kite
    last = Decimal(str(kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"]))
    price = (last * Decimal("1.02") / Decimal("0.05")).quantize(Decimal(1), ROUND_DOWN) * Decimal(
        "0.05"
    )
    return {
        "client_order_id": coid,
        "symbol": symbol,
        "side": "BUY",
        "quantity": 1,
        "order_type": "LIMIT",
        "price": str(price),
        "product": "CNC",
    }


def test_default_settings_one_login_trades_through_several_simulated_days(
    start_broker, kitesim: Sim
) -> None:
    broker: Broker = start(start_broker)
    broker.login(kitesim)
    days = []
    for n in range(4):
        state = kitesim.control("/clock/advance", {"seconds": 3600})  # into the next day's hour
        days.append(state["day"])
        assert broker.get("/session").json()["valid"] is kitesim_says_valid(kitesim) is True
        placed = broker.post("/orders", crossing_buy(kitesim, f"days-{n}"))
        assert placed.json()["status"] == "OPEN", placed.text
        kitesim.control("/clock/advance", {"seconds": 600})
        wait_until(
            lambda n=n: broker.order(f"days-{n}")["status"] == "COMPLETE",
            timeout=60,
            message=f"order of day {n} filled",
        )
        assert broker.get("/session").json()["valid"] is kitesim_says_valid(kitesim) is True
        kitesim.control("/clock/advance", {"seconds": 22500 - 4200})  # the rest of the day
    assert len(set(days)) == 4  # four simulated days, one login


@pytest.mark.parametrize("kitesim", [{"DALAL_KITESIM_EXPIRY_CLOCK": "market"}], indirect=True)
def test_token_killed_by_kitesims_clock_flips_the_session_without_an_order(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker: Broker = start(start_broker)
    broker.login(kitesim)
    [live] = kitesim.control("/state", method="GET")["sessions"]
    assert broker.get("/session").json()["valid"] is True
    # past 06:00 IST of the next simulated day: kitesim has killed the token
    kitesim.control("/clock/advance", {"until": live["expires_at"].replace("+00:00", "Z")})
    kitesim.control("/clock/advance", {"seconds": 60})
    assert not kitesim_says_valid(kitesim)
    wait_until(
        lambda: broker.get("/session").json()["valid"] is False,
        timeout=60,
        message="the broker sees the dead token",
    )
    assert "SessionExpired" in system_events(redis_url)
    refused = broker.post("/orders", crossing_buy(kitesim, "after-expiry"))
    assert refused.json()["reason"] == "no_session"
    broker.login(kitesim)  # a new login: both agree again
    assert broker.get("/session").json()["valid"] is kitesim_says_valid(kitesim) is True
    assert datetime.fromisoformat(broker.get("/session").json()["expires_at"])


def test_a_token_refused_to_another_service_flips_the_session_at_once(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    """The data service's candles call met TokenException (KiteSessionRefused on
    system.events): the broker checks at once, long before its watchdog's next round."""
    broker = KeyedBroker(start_broker(wait_leader=False, DALAL_SESSION_CHECK_SECONDS="3600").proc)
    wait_until(lambda: broker.get("/status").json()["leader"], message="broker leads")
    broker.login(kitesim)
    publish = redis.Redis.from_url(redis_url)
    try:
        # a stale report while Kite still honours the token changes nothing
        _, fields = wrap_fields(KiteSessionRefused(service="data", reason="old"), source="data")
        publish.xadd(SYSTEM_EVENTS, fields)
        wait_until(
            lambda: (
                metric(
                    broker,
                    "dalal_bus_messages_handled_total",
                    stream=SYSTEM_EVENTS,
                    group="broker",
                    type="KiteSessionRefused",
                )
                >= 1
            ),
            timeout=30,
            message="the broker handled the report",
        )
        assert broker.get("/session").json()["valid"] is True
        kitesim.control("/session/expire", {})  # Kite kills the token (e.g. a login elsewhere)
        assert broker.get("/session").json()["valid"] is True  # nobody has asked Kite yet
        _, fields = wrap_fields(
            KiteSessionRefused(service="data", reason="TokenException"), source="data"
        )
        publish.xadd(SYSTEM_EVENTS, fields)
        wait_until(
            lambda: broker.get("/session").json()["valid"] is False,
            timeout=30,
            message="the broker checked the session on the report",
        )
        assert "SessionExpired" in system_events(redis_url)
    finally:
        publish.close()


def test_a_login_that_meets_kites_rate_limit_asks_again(start_broker, kitesim: Sim) -> None:
    """Kite answers the token exchange with 429 (refused before it looked at the one-time
    request token): the broker asks again and the login completes."""
    broker = start(start_broker)
    kitesim.control("/faults", {"kind": "status", "status": 429, "count": 2, "route": "other"})
    broker.login(kitesim)
    assert broker.get("/session").json()["valid"] is True
    assert kitesim.control("/state", method="GET")["faults_pending"] == 0
