"""The console as a process in front of a real portfolio service and a real Redis: logins,
the session cookie, CSRF, the allow-list, dead letters and live events, over HTTP as a browser
(or a script) meets them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dalal_shared.bus import dlq_name
from dalal_shared.messages import Envelope, KillSwitchEngaged, OrderFilled
from dalal_shared.streams import ORDERS_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, free_port, wait_until

pytestmark = pytest.mark.slow

KEY = "console-test-key-0123456789abcdef"


@pytest.fixture
def stack(
    service_processes: ServiceProcesses, redis_url: str, tmp_path: Path
) -> dict[str, ServiceProcess]:
    portfolio = service_processes.start(
        "dalal_portfolio",
        {
            "DALAL_REDIS_URL": redis_url,
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
            "DALAL_API_KEY": KEY,
            "DALAL_RECONCILE_ENABLED": "false",
            "DALAL_LOG_FORMAT": "json",
        },
        name="portfolio",
    )
    nobody = f"http://127.0.0.1:{free_port()}"  # services not started: unreachable
    console = service_processes.start(
        "dalal_console",
        {
            "DALAL_REDIS_URL": redis_url,
            "DALAL_API_KEY": KEY,
            "DALAL_PORTFOLIO_URL": portfolio.base_url,
            "DALAL_BROKER_URL": nobody,
            "DALAL_ENGINE_URL": nobody,
            "DALAL_DATA_URL": nobody,
            "DALAL_LOG_FORMAT": "json",
        },
        name="console",
    )
    return {"portfolio": portfolio, "console": console}


def logged_in(base: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=10)
    r = client.post("/api/login", json={"key": KEY})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def test_pages_need_a_login_and_the_login_sets_an_httponly_strict_cookie(
    stack: dict[str, ServiceProcess],
) -> None:
    base = stack["console"].base_url
    anon = httpx.Client(base_url=base, timeout=10)
    r = anon.get("/orders")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/orders"
    assert anon.get("/api/today").json()["error"] == "login_required"
    login = anon.get("/login")
    assert login.status_code == 200 and "API key" in login.text

    wrong = anon.post("/api/login", json={"key": "not-the-key-at-all"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "bad_key")
    empty = anon.post("/api/login", json={"key": ""})
    assert empty.status_code == 422

    r = anon.post("/api/login", json={"key": KEY})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = anon.get("/orders")
    assert page.status_code == 200
    # the page carries the CSRF token, never the key; only the console's own scripts may run
    assert KEY not in page.text and r.json()["csrf"] in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    for path in ("/", "/strategies", "/backtests", "/reconcile"):
        assert anon.get(path).status_code == 200, path

    # a forged or tampered cookie is no session
    forged = httpx.Client(base_url=base, timeout=10, cookies={"dalal_console": "1.abc.def"})
    assert forged.get("/").status_code == 303
    anon.post("/api/logout", headers={"X-CSRF-Token": r.json()["csrf"]})
    assert anon.get("/").status_code == 303


def test_reads_reach_the_service_with_the_key_the_browser_never_holds(
    stack: dict[str, ServiceProcess],
) -> None:
    client, _csrf = logged_in(stack["console"].base_url)
    book = client.get("/api/portfolio/portfolio")
    assert book.status_code == 200 and book.json()["cash"] == "1000000.00"
    today = client.get("/api/today").json()
    assert today["portfolio"]["equity"] == "1000000.00"
    assert today["pnl_today"]["total"] == "0.00"
    # the broker is down: its part says so, the page still renders the rest
    assert today["broker"]["error"] == "service_unavailable"
    # scripts may present the key itself instead of a cookie
    script = httpx.get(
        f"{stack['console'].base_url}/api/portfolio/positions",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert script.status_code == 200 and script.json() == {"positions": []}
    # only the routes the pages use are forwarded
    for method, path in (
        ("POST", "/api/portfolio/cash/deposits"),
        ("POST", "/api/portfolio/seed/import"),
        ("GET", "/api/kitesim/_sim/state"),
    ):
        r = client.request(method, path, json={}, headers={"X-CSRF-Token": _csrf})
        assert (r.status_code, r.json()["error"]) == (404, "not_found"), path


def test_a_change_needs_the_csrf_token_of_the_session(stack: dict[str, ServiceProcess]) -> None:
    base = stack["console"].base_url
    client, csrf = logged_in(base)
    engage = "/api/broker/kill-switch/engage"
    no_token = client.post(engage, json={"reason": "x"})
    assert (no_token.status_code, no_token.json()["error"]) == (403, "csrf_failed")
    _other, other_csrf = logged_in(base)  # another session's token is not this one's
    wrong = client.post(engage, json={"reason": "x"}, headers={"X-CSRF-Token": other_csrf})
    assert wrong.status_code == 403
    cross = client.post(
        engage,
        json={"reason": "x"},
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert (cross.status_code, cross.json()["error"]) == (403, "csrf_failed")
    # with the token the request goes on to the broker (down here: a clear 503, not a 500)
    passed = client.post(engage, json={"reason": "x"}, headers={"X-CSRF-Token": csrf})
    assert (passed.status_code, passed.json()["error"]) == (503, "service_unavailable")


def test_wrong_keys_are_limited(stack: dict[str, ServiceProcess]) -> None:
    client = httpx.Client(base_url=stack["console"].base_url, timeout=10)
    codes = [client.post("/api/login", json={"key": f"wrong-{i}"}).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    # the right key is refused too while the window lasts: no guessing at speed
    assert client.post("/api/login", json={"key": KEY}).status_code == 429


def _dead_letter(client: redis.Redis) -> str:
    fill = OrderFilled(
        client_order_id="c-dead",
        broker_order_id="b1",
        trade_id="T1",
        symbol="INFY",
        side="BUY",
        product="CNC",
        quantity=1,
        price="1500.05",
        filled_at="2024-01-03T10:00:00+05:30",
    )
    fields: dict[Any, Any] = Envelope.wrap(fill, source="test").to_fields()
    fields |= {
        "dlq_stream": ORDERS_EVENTS,
        "dlq_entry_id": "1-0",
        "dlq_group": "portfolio",
        "dlq_error": "boom",
        "dlq_reason": "failed",
        "dlq_deliveries": "5",
        "dlq_failures": "5",
        "dlq_lossless": "1",
        "dlq_at": "2024-01-03T04:30:00+00:00",
    }
    return str(client.xadd(dlq_name(ORDERS_EVENTS), fields), "ascii")


def test_dead_letters_listed_and_replayed(stack: dict[str, ServiceProcess], redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    dlq_id = _dead_letter(r)
    client, csrf = logged_in(stack["console"].base_url)
    listed = client.get("/api/dlq").json()
    assert listed["streams"] == {ORDERS_EVENTS: 1}
    assert [e["type"] for e in listed["entries"]] == ["OrderFilled"]
    before = r.xlen(ORDERS_EVENTS)
    bad = client.post(
        "/api/dlq/replay",
        json={"dlq_id": "99-0", "stream": ORDERS_EVENTS},
        headers={"X-CSRF-Token": csrf},
    )
    assert (bad.status_code, bad.json()["error"]) == (404, "dlq_refused")
    done = client.post(
        "/api/dlq/replay",
        json={"dlq_id": dlq_id, "stream": ORDERS_EVENTS},
        headers={"X-CSRF-Token": csrf},
    )
    assert done.status_code == 200, done.text
    assert r.xlen(ORDERS_EVENTS) == before + 1 and r.xlen(dlq_name(ORDERS_EVENTS)) == 0
    # the replayed fill reached the ledger through the bus
    wait_until(
        lambda: client.get("/api/portfolio/positions").json()["positions"],
        timeout=30,
        message="the portfolio books the replayed fill",
    )


def test_events_stream_what_the_bus_carries(
    stack: dict[str, ServiceProcess], redis_url: str
) -> None:
    client, _csrf = logged_in(stack["console"].base_url)
    seen: list[dict[str, Any]] = []
    ready = threading.Event()
    stop = threading.Event()

    keepalives: list[str] = []

    def listen() -> None:
        with client.stream("GET", "/api/events", timeout=60) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in resp.iter_lines():
                if line.startswith(":"):
                    keepalives.append(line)
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "hello":
                        ready.set()
                    elif event == "bus":
                        seen.append(json.loads(line[6:]))
                if stop.is_set():
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(20), "no hello from /api/events"
    r = redis.Redis.from_url(redis_url)
    message = KillSwitchEngaged(reason="test", engaged_by="ops")
    r.xadd(SYSTEM_EVENTS, Envelope.wrap(message, source="test").to_fields())
    got = wait_until(
        lambda: [e for e in seen if e.get("type") == "KillSwitchEngaged"],
        timeout=20,
        message="the event on the page's stream",
    )
    assert got[0]["stream"] == SYSTEM_EVENTS and got[0]["data"]["reason"] == "test"
    # a quiet bus is a keep-alive, never a "bus down" (the read outlasts Redis' block)
    wait_until(lambda: keepalives, timeout=30, message="a keep-alive on a quiet stream")
    assert [e for e in seen if "connected" in e] == []
    stop.set()
    r.xadd(SYSTEM_EVENTS, Envelope.wrap(message, source="test").to_fields())  # wakes the reader
    thread.join(20)
