"""`dalal run` (what `make run` calls): starts everything, prints where, stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from dalal_shared.testing import dalal_run, run_env, wait_until

SERVICES = ("broker", "data", "portfolio", "engine")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = run_env(tmp_path / "var")
    env.update(extra)
    return env


def _said(out: Path, phrase: str) -> str | None:
    """What `dalal run` printed, once it holds `phrase` (lines joined: rich wraps them)."""
    text = " ".join(out.read_text().split())
    return text if phrase in text else None


def _dalal() -> list[str]:
    return [sys.executable, "-m", "dalal_shared.cli"]


def test_run_starts_everything_prints_urls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [*_dalal(), "run"], env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(),
            timeout=90,
            message="dalal run to report the stack up",
        )
        # and where kitesim's replay stands (the line after the table)
        text = wait_until(
            lambda: _said(out, "the replay's data ends"),
            message="the replay's range",
        )
        assert "the replay's data ends 2025-09-30" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 8  # redis, kitesim, four services, data-worker, scheduler
        for name in (*SERVICES, "kitesim"):
            url = f"http://127.0.0.1:{env[f'DALAL_{name.upper()}_PORT']}"
            assert url in text
            assert httpx.get(f"{url}/readyz").status_code == 200
        assert f"redis://127.0.0.1:{env['DALAL_REDIS_PORT']}" in text
        # the workers without an API serve Prometheus /metrics where the table says
        for worker, metric in (
            ("data-worker", "dalal_worker_tasks_total"),
            ("scheduler", "dalal_data_scheduler_jobs_sent_total"),
            ("engine-worker", "dalal_worker_tasks_total"),
        ):
            port = env[f"DALAL_{worker.upper().replace('-', '_')}_METRICS_PORT"]
            url = f"http://127.0.0.1:{port}/metrics"
            assert url in " ".join(text.split())
            wait_until(
                lambda url=url, metric=metric: metric in httpx.get(url, timeout=5).text,
                timeout=60,
                message=f"{worker} metrics",
            )
        # sim mode: kitesim runs at the printed URL and hands out login tokens
        kitesim = f"http://127.0.0.1:{env['DALAL_KITESIM_PORT']}"
        assert kitesim in text
        login = httpx.get(f"{kitesim}/connect/login", params={"api_key": "kitesim_key", "v": 3})
        assert login.status_code == 200
        key = (tmp_path / "var" / "api_key").read_text().strip()
        assert oct((tmp_path / "var" / "api_key").stat().st_mode & 0o777) == "0o600"
        # logs and databases under var/ are the user's alone
        private = [*(tmp_path / "var" / "log").glob("*.log"), *(tmp_path / "var").glob("*.sqlite3")]
        assert len(private) >= 6
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in private} == {
            p.name: "0o600" for p in private
        }
        # services read from each other with the read-only key `dalal run` derives: the
        # portfolio's reconcile reaches the broker's reads (Kite may still have no session)
        reconcile = httpx.get(
            f"http://127.0.0.1:{env['DALAL_PORTFOLIO_PORT']}/reconcile",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert "unauthorized" not in reconcile.text, reconcile.text
        engine = f"http://127.0.0.1:{env['DALAL_ENGINE_PORT']}"
        broker = f"http://127.0.0.1:{env['DALAL_BROKER_PORT']}"
        auth = {"Authorization": f"Bearer {key}"}
        order = {"client_order_id": "run-1", "symbol": "INFY", "side": "BUY", "quantity": 1}
        # not logged in to kitesim: the engine's risk manager refuses it itself ...
        wait_until(
            lambda: httpx.get(f"{engine}/engine/status", headers=auth).json()["safety_state_known"],
            message="the engine asked the broker and the portfolio",
        )
        refused = httpx.post(f"{engine}/engine/orders", headers=auth, json=order)
        assert (refused.status_code, refused.json()["reason"]) == (422, "session_invalid")
        # ... and the broker's route rejects it with its reason, announced on the bus
        placed = httpx.post(f"{broker}/orders", headers=auth, json=order)
        assert (placed.json()["status"], placed.json()["reason"]) == ("REJECTED", "no_session")
        wait_until(
            lambda: (
                httpx.get(f"{broker}/orders/run-1", headers=auth).json()["status"] == "REJECTED"
            ),
            message="round trip through the embedded redis",
        )

        status = subprocess.run(
            [*_dalal(), "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        # the trading state at a glance: mode, session, kill switch, the guards, the engine
        shown = " ".join(status.stdout.split())
        assert "mode: sim" in shown and "session: not valid" in shown, shown
        assert "kill switch: off" in shown
        assert "max order value Rs 500000" in shown
        assert "engine: running" in shown

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
        for name in SERVICES:
            port = int(env[f"DALAL_{name.upper()}_PORT"])
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # whatever happened above, no child may outlive the test
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            message="children gone after the supervisor",
        )
    # a service log exists for each part, in JSON
    for name in SERVICES:
        assert (tmp_path / "var" / "log" / f"{name}.log").stat().st_size > 0


def test_run_refuses_a_taken_port_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        env = _env(tmp_path, DALAL_BROKER_PORT=str(taken))
        proc = subprocess.run(
            [*_dalal(), "run"], env=env, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 1
    message = " ".join((proc.stdout + proc.stderr).split())
    assert f"port {taken} (broker) is already in use" in message
    assert "DALAL_BROKER_PORT" in message
    assert "Traceback" not in proc.stderr


def test_run_names_a_bad_setting(tmp_path: Path) -> None:
    env = _env(tmp_path, DALAL_ENGINE_PORT="eighty")
    proc = subprocess.run([*_dalal(), "run"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "DALAL_ENGINE_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_says_when_nothing_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*_dalal(), "status"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "not reachable" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_explains(args: list[str]) -> None:
    proc = subprocess.run([*_dalal(), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout


def test_a_killed_supervisor_leaves_no_orphans(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [*_dalal(), "run", "--only", "engine"],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(), timeout=90, message="dalal run up"
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # redis and the engine
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
        proc.wait(10)
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            message="children follow their supervisor",
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def _redis_children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [
        c
        for c in psutil.Process(proc.pid).children(recursive=True)
        if c.is_running() and c.status() != "zombie" and "redis-server" in c.name()
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_restarts_a_killed_embedded_redis_with_its_data(tmp_path: Path) -> None:
    """SIGKILL the embedded Redis of a running `dalal run`: it comes back on the same port with
    what it held (AOF), and the services it serves are ready again."""
    import redis

    env = _env(tmp_path)
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [*_dalal(), "run", "--only", "portfolio"],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    children: list[psutil.Process] = []
    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(), timeout=90, message="dalal run up"
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        url = f"redis://127.0.0.1:{env['DALAL_REDIS_PORT']}/0"
        client = redis.Redis.from_url(url)
        client.set("dalal:e2e:kept", "yes")
        client.close()
        [first] = _redis_children(proc)
        readyz = f"http://127.0.0.1:{env['DALAL_PORTFOLIO_PORT']}/readyz"
        assert httpx.get(readyz, timeout=10).status_code == 200

        first.send_signal(signal.SIGKILL)
        wait_until(
            lambda: [c for c in _redis_children(proc) if c.pid != first.pid],
            timeout=60,
            message="a new embedded Redis",
        )

        def kept() -> bool:
            try:
                with redis.Redis.from_url(url, socket_timeout=2) as again:
                    return again.get("dalal:e2e:kept") == b"yes"
            except redis.RedisError:
                return False

        wait_until(kept, timeout=60, message="the data back on the same port")

        def ready() -> bool:
            try:
                return httpx.get(readyz, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=90, message="the portfolio ready again")
        assert proc.poll() is None  # the supervisor carried on
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            message="children gone after the supervisor",
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reconcile_runs_by_itself_and_dalal_reconcile_lists_breaks(tmp_path: Path) -> None:
    """Under `dalal run` (kitesim, broker, portfolio): once logged in both books reconcile by
    themselves (ReconcileCompleted on system.events, clean); `dalal reconcile` says clean
    (exit 0), and lists an order placed by hand in Kite as a break (exit 1)."""
    import redis

    from dalal_shared.messages import Envelope, ReconcileCompleted

    env = _env(tmp_path)
    out = tmp_path / "run.out"
    proc = subprocess.Popen(
        [*_dalal(), "run", "--only", "kitesim,broker,portfolio"],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def dalal_reconcile() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_dalal(), "reconcile"], env=env, capture_output=True, text=True, timeout=120
        )

    children: list[psutil.Process] = []
    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(), timeout=120, message="dalal run up"
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        before = dalal_reconcile()  # no Kite session yet: the broker cannot answer
        assert before.returncode == 1 and "Traceback" not in before.stdout + before.stderr

        kitesim = f"http://127.0.0.1:{env['DALAL_KITESIM_PORT']}"
        broker = f"http://127.0.0.1:{env['DALAL_BROKER_PORT']}"
        key = (tmp_path / "var" / "api_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        token = httpx.post(f"{kitesim}/_sim/login", headers=auth, timeout=30).json()[
            "request_token"
        ]
        login = httpx.get(
            f"{broker}/session/callback", params={"request_token": token}, headers=auth, timeout=30
        )
        assert login.status_code == 200, login.text

        bus = redis.Redis.from_url(f"redis://127.0.0.1:{env['DALAL_REDIS_PORT']}/0")

        def completed() -> dict[str, ReconcileCompleted]:
            last: dict[str, ReconcileCompleted] = {}
            for _id, fields in bus.xrange("system.events"):
                message = Envelope.from_fields(fields).message
                if isinstance(message, ReconcileCompleted):
                    last[message.scope] = message
            return last

        wait_until(
            lambda: set(completed()) == {"portfolio", "broker"},
            timeout=120,
            message="both books reconciled by themselves",
        )
        assert [e.breaks for e in completed().values()] == [0, 0]
        bus.close()
        clean = dalal_reconcile()
        assert clean.returncode == 0, clean.stdout + clean.stderr

        from kiteconnect import KiteConnect

        kite = KiteConnect(api_key="kitesim_key", root=kitesim)
        token = httpx.post(f"{kitesim}/_sim/login", headers=auth, timeout=30).json()[
            "request_token"
        ]
        kite.generate_session(token, api_secret="kitesim_secret_0123456789")
        below = round(kite.ltp("NSE:TCS")["NSE:TCS"]["last_price"] * 0.9 * 20) / 20
        kite.place_order(  # resting below the market, inside the day's circuit band
            variety="regular", exchange="NSE", tradingsymbol="TCS", transaction_type="BUY",
            quantity=1, product="CNC", order_type="LIMIT", price=below, tag="by-hand",
        )  # fmt: skip
        broken = dalal_reconcile()
        assert broken.returncode == 1
        assert "unknown_order" in broken.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            message="children gone after the supervisor",
        )


def test_a_replay_past_its_data_says_the_market_is_silent_and_how_to_start_over(
    tmp_path: Path,
) -> None:
    """Where ~7 hours of one-minute sessions (or days of `make run` on kitesim's saved state)
    take the sim: past the bundled data's last day, sessions without a tick. `dalal run` says
    so and how to start over, and kitesim's readiness says the same."""
    env = _env(tmp_path, DALAL_KITESIM_START_DATE="2025-10-06")
    out = tmp_path / "run.out"
    with dalal_run(env, out):
        text = wait_until(
            lambda: _said(out, "ran past its data"),
            message="the warning",
        )
        assert "last day 2025-09-30" in text and "simulated today 2025-10-06" in text
        assert f"delete {tmp_path / 'var'}" in text
        kitesim = f"http://127.0.0.1:{env['DALAL_KITESIM_PORT']}"
        ready = httpx.get(f"{kitesim}/readyz", timeout=10)
        assert ready.status_code == 200  # the books are still served
        assert ready.json()["checks"]["replay"].startswith("exhausted")
