"""kitesim keeps its state across restarts (state.py): SIGTERM or SIGKILL a real
`python -m dalal_kitesim`, start it again on the same state file, and the old access token
works, the day's orders, trades, positions and holdings are the same, the clock stands where it
stood, an open order still trades, and the official KiteTicker (in its own process: its reactor
runs once per process) reconnects with its token and gets ticks again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from kiteconnect import KiteConnect

from dalal_shared.testing import ServiceProcess, free_port, wait_until

from .conftest import API_KEY, API_SECRET

pytestmark = pytest.mark.slow
RELIANCE = 738561

TICKER = """
import json, sys
from kiteconnect import KiteTicker
api_key, token, root, instrument = sys.argv[1:5]
kws = KiteTicker(api_key, token, root=root, reconnect=True, reconnect_max_tries=300,
                 reconnect_max_delay=5)
def say(*words):
    print(json.dumps(words), flush=True)
def on_connect(ws, _response):
    ws.subscribe([int(instrument)])
    ws.set_mode(ws.MODE_LTP, [int(instrument)])
    say("connect")
kws.on_connect = on_connect
kws.on_ticks = lambda _ws, ticks: [say("tick", t["last_price"]) for t in ticks]
kws.on_close = lambda _ws, code, reason: say("close", code)
kws.on_reconnect = lambda _ws, n: say("reconnect", n)
kws.on_order_update = lambda _ws, data: say("order", data["order_id"], data["status"])
kws.connect()
"""


class Ticker:
    """The official KiteTicker in a child process; its events as they come."""

    def __init__(self, tmp: Path, token: str, port: int):
        script = tmp / "ticker.py"
        script.write_text(TICKER)
        self.events: list[list[Any]] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(script), API_KEY, token, f"ws://127.0.0.1:{port}", str(RELIANCE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def count(self, kind: str) -> int:
        return sum(1 for e in list(self.events) if e[0] == kind)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=15)


def start_kitesim(tmp: Path, port: int, state: Path, n: int) -> ServiceProcess:
    proc = ServiceProcess(
        "dalal_kitesim",
        env={
            "DALAL_PORT": str(port),
            "DALAL_KITESIM_SESSION_SECONDS": "0",  # manual clock
            "DALAL_KITESIM_STATE_FILE": str(state),
            "DALAL_KITESIM_RATE_QUOTE_PER_SECOND": "0",
            "DALAL_LOG_FORMAT": "json",
        },
        log_path=tmp / f"kitesim-{n}.log",
        port=port,
    ).start()
    proc.wait_healthy(timeout=60)
    return proc


def control(port: int, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    r = httpx.request(method, f"http://127.0.0.1:{port}/_sim{path}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def price_near(kite: KiteConnect, factor: str) -> float:
    last = Decimal(str(kite.ltp("NSE:RELIANCE")["NSE:RELIANCE"]["last_price"]))
    steps = (last * Decimal(factor) / Decimal("0.05")).quantize(Decimal(1), ROUND_DOWN)
    return float(steps * Decimal("0.05"))


def book(kite: KiteConnect) -> dict[str, Any]:
    """What a user sees of the account (times and ids included)."""
    return {
        "orders": kite.orders(),
        "trades": kite.trades(),
        "positions": kite.positions()["net"],
        "holdings": kite.holdings(),
        "margins": kite.margins("equity"),
    }


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restarted_kitesim_is_the_same_exchange(
    tmp_path: Path, procs: list[Any], sig: signal.Signals
) -> None:
    port, state = free_port(), tmp_path / "var" / "kitesim" / "state.json"
    first = start_kitesim(tmp_path, port, state, 1)
    procs.append(first)
    control(port, "/clock/advance", {"seconds": 60})
    kite = KiteConnect(api_key=API_KEY, root=f"http://127.0.0.1:{port}", timeout=10)
    kite.generate_session(control(port, "/login")["request_token"], api_secret=API_SECRET)
    common = {"exchange": "NSE", "tradingsymbol": "RELIANCE", "order_type": "LIMIT"}
    # day 1: a CNC buy that fills becomes a holding at the next open
    kite.place_order("regular", transaction_type="BUY", quantity=3, product="CNC",
                     price=price_near(kite, "1.02"), **common)  # fmt: skip
    control(port, "/clock/advance", {"seconds": 600})
    control(port, "/clock/advance", {"until": "2024-01-03T10:00:00+05:30"})
    # day 2: an MIS position and an order resting below the market
    kite.place_order("regular", transaction_type="BUY", quantity=5, product="MIS",
                     price=price_near(kite, "1.02"), **common)  # fmt: skip
    resting = kite.place_order("regular", transaction_type="BUY", quantity=2, product="CNC",
                               price=price_near(kite, "0.9"), **common)  # fmt: skip
    control(port, "/clock/advance", {"seconds": 300})
    before = book(kite)
    clock_before = control(port, "/state", method="GET")
    assert [p["quantity"] for p in before["positions"]] == [5]
    assert before["holdings"][0]["t1_quantity"] == 3
    assert {o["order_id"]: o["status"] for o in before["orders"]}[resting] == "OPEN"

    ticker = Ticker(tmp_path, kite.access_token, port)
    procs.append(ticker)
    wait_until(lambda: ticker.count("connect") == 1, timeout=60, message="ticker connected")
    control(port, "/clock/advance", {"seconds": 120})
    wait_until(lambda: ticker.count("tick") > 0, timeout=60, message="ticks before")
    before = book(kite)
    clock_before = control(port, "/state", method="GET")

    assert first.process is not None
    first.signal(sig)
    first.process.wait(timeout=30)
    wait_until(lambda: ticker.count("close") + ticker.count("reconnect") > 0, timeout=60,
               message="the ticker saw kitesim go")  # fmt: skip

    second = start_kitesim(tmp_path, port, state, 2)
    procs.append(second)
    assert kite.profile()["user_id"] == "KS0001"  # the old token
    after_clock = control(port, "/state", method="GET")
    for key in ("now", "day", "in_session", "after_square_off"):  # the same simulated moment
        assert after_clock[key] == clock_before[key]
    assert after_clock["day"] == "2024-01-03"
    assert book(kite) == before  # the same book, prices and funds

    # the ticker is back on its own, with its token, and ticks flow again
    wait_until(lambda: ticker.count("connect") >= 2, timeout=90, message="ticker reconnected")
    ticks = ticker.count("tick")
    control(port, "/clock/advance", {"seconds": 120})
    wait_until(lambda: ticker.count("tick") > ticks, timeout=60, message="ticks after")

    # the resting order still trades: raised above the market, it fills
    kite.modify_order("regular", resting, price=price_near(kite, "1.02"))
    control(port, "/clock/advance", {"seconds": 120})
    assert kite.order_history(resting)[-1]["status"] == "COMPLETE"
    assert len(kite.orders()) == len(before["orders"])  # ids went on, no order was lost
