"""A trading day under `dalal run` (sim): CNC bought twice, MIS bought, sold and bought again
(then squared off by the broker at 15:20), all through the broker's POST /orders against
kitesim; at the close the scheduler's SessionClosed makes the portfolio and the broker
reconcile by themselves, and both books come out clean (no double-counted T1 holding, no
day-average against FIFO break), as `dalal reconcile` then confirms."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from dalal_shared.messages import Envelope, ReconcileCompleted
from dalal_shared.testing import run_env, stack_report, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = ("broker", "data", "portfolio", "engine", "kitesim")


def _env(tmp_path: Path) -> dict[str, str]:
    env = run_env(tmp_path / "var")
    env["DALAL_KITESIM_SESSION_SECONDS"] = "900"  # slow while the orders go in
    env["DALAL_RECONCILE_CONFIRM_SECONDS"] = "5"
    # the broker's 15:20 square-off reaches the journal and the ledger through the trade sweep
    # (every 60 s by default, minutes before the real close); the 15:20 -> 15:30 stretch here is
    # squeezed into ~6 s, so the sweep runs often to keep the same order of events
    env["DALAL_TRADE_SWEEP_SECONDS"] = "1"
    env["COLUMNS"] = "200"
    return env


def test_a_days_trades_reconcile_clean_after_the_close(tmp_path: Path) -> None:
    env = _env(tmp_path)
    dalal = [sys.executable, "-m", "dalal_shared.cli"]
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [*dalal, "run"], env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT
    )
    children: list[psutil.Process] = []

    def url(name: str) -> str:
        return f"http://127.0.0.1:{env[f'DALAL_{name.upper()}_PORT']}"

    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(), timeout=180, message="dalal run up"
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        key = (tmp_path / "var" / "api_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        token = httpx.post(f"{url('kitesim')}/_sim/login", headers=auth, timeout=30).json()
        login = httpx.get(
            f"{url('broker')}/session/callback",
            params={"request_token": token["request_token"]},
            headers=auth,
            timeout=30,
        )
        assert login.status_code == 200, login.text

        orders = [
            ("eod-c1", "RELIANCE", "BUY", 10, "CNC"),
            ("eod-c2", "RELIANCE", "BUY", 5, "CNC"),  # bought twice: one T1 holding tomorrow
            ("eod-m1", "INFY", "BUY", 4, "MIS"),
            ("eod-m2", "INFY", "SELL", 4, "MIS"),
            ("eod-m3", "INFY", "BUY", 6, "MIS"),  # re-bought: day average != FIFO average
        ]
        for coid, symbol, side, quantity, product in orders:
            placed = httpx.post(
                f"{url('broker')}/orders",
                headers=auth,
                json={"client_order_id": coid, "symbol": symbol, "side": side,
                      "quantity": quantity, "product": product, "market_protection": "2"},
                timeout=60,
            )  # fmt: skip
            assert placed.status_code == 200, placed.text

            def status(coid: str = coid) -> str | None:
                r = httpx.get(f"{url('broker')}/orders/{coid}", headers=auth, timeout=30)
                return r.json().get("status")

            wait_until(lambda: status() == "COMPLETE", timeout=120, message=f"{coid} filled")

        # now let the day run out fast up to 15:05 (a session in 20 s), then slower for the
        # square-off (15:20), the close (15:30) and the scheduler's SessionClosed (a session in
        # 240 s: ~6 s from square-off to close): the broker's trade sweep (every second here)
        # picks the square-off up before the next open resets Kite's trade book, as it has
        # minutes to on a real day
        def sim_now() -> str:
            state = httpx.get(f"{url('kitesim')}/_sim/state", headers=auth, timeout=30).json()
            return str(state["now_ist"])

        day = sim_now()[:10]
        for session_seconds, until in ((20, f"{day} 15:05:00"), (240, None)):
            speed = httpx.post(
                f"{url('kitesim')}/_sim/clock/speed",
                headers=auth,
                json={"session_seconds": session_seconds},
                timeout=30,
            )
            assert speed.status_code == 200, speed.text
            if until is not None:
                wait_until(
                    lambda until=until: sim_now() >= until,
                    timeout=120,
                    interval=0.1,
                    message="the afternoon",
                )
        bus = redis.Redis.from_url(f"redis://127.0.0.1:{env['DALAL_REDIS_PORT']}/0")

        def end_of_day() -> dict[str, ReconcileCompleted]:
            found = {}
            for _id, fields in bus.xrange("system.events"):
                message = Envelope.from_fields(fields).message
                if isinstance(message, ReconcileCompleted) and message.trigger == "session_closed":
                    found.setdefault(message.scope, message)
            return found

        wait_until(
            lambda: set(end_of_day()) == {"portfolio", "broker"},
            timeout=300,
            interval=1,
            message="both end-of-day reconciliations",
        )
        results = end_of_day()
        bus.close()
        now = {
            name: httpx.get(f"{url(name)}/reconcile", headers=auth, timeout=60).text
            for name in ("portfolio", "broker")
        }
        assert {s: (e.breaks, e.kinds) for s, e in results.items()} == {
            "portfolio": (0, ()),
            "broker": (0, ()),
        }, now
        assert results["portfolio"].day == results["broker"].day
        checked = subprocess.run(
            [*dalal, "reconcile"], env=env, capture_output=True, text=True, timeout=180
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    except BaseException:  # the stack's output and logs into the report (a CI-only failure)
        print(stack_report(tmp_path / "var", out))
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            message="children gone after the supervisor",
        )
