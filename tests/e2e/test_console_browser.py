"""The console in a real browser (Debian's Chromium driven by Playwright) against the whole
stack as `dalal run` starts it in sim mode: log in, log in to Kite from the Today page, see a
fill appear live, engage the kill switch and see an order refused, pause a strategy, run a
backtest and open its report, and read every page on a phone-sized screen.

Set DALAL_CONSOLE_SCREENSHOTS=docs/console to refresh the README's screenshots."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dalal_shared.bus import dlq_name
from dalal_shared.messages import Envelope, KillSwitchReleased
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import dalal_run, run_env, wait_until

pytestmark = pytest.mark.slow

SERVICES = ("broker", "data", "portfolio", "engine", "kitesim", "console")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:  # scripts/install-test-tools.sh installs it (make test)
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = run_env(tmp_path / "var")
    url = {n: f"http://127.0.0.1:{env[f'DALAL_{n.upper()}_PORT']}" for n in SERVICES}
    out = tmp_path / "run.out"
    with dalal_run(env, out):
        assert url["console"] in out.read_text()  # `dalal run` says where the console is
        key = (tmp_path / "var" / "api_key").read_text().strip()
        yield {
            "url": url,
            "key": key,
            "auth": {"Authorization": f"Bearer {key}"},
            "redis_url": f"redis://127.0.0.1:{env['DALAL_REDIS_PORT']}/0",
        }


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shots(tmp_path: Path) -> Path:
    where = os.environ.get("DALAL_CONSOLE_SCREENSHOTS")
    folder = Path(where) if where else tmp_path / "shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shoot(page: Any, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.evaluate("document.querySelectorAll('.flash').forEach(f => f.remove())")
    page.screenshot(path=str(path), full_page=True)


def _confirm(page: Any) -> None:
    page.locator("#confirm-ok").click()


def test_the_trading_day_in_a_browser(stack: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    url, auth = stack["url"], stack["auth"]
    console = url["console"]
    shots = _shots(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    expect = sync_api.expect

    def api(method: str, service: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{url[service]}{path}", headers=auth, timeout=30, **kw)
        return r.json()

    # -- log in to the console (a wrong key first: a clear message, no way in)
    page.goto(console + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("#key", "not-the-key")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not this stack's API key")
    page.fill("#key", stack["key"])
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Today")
    expect(page.locator("#live")).to_have_text("live")
    assert stack["key"] not in page.content()

    # -- the Kite login from the Today page: kitesim's login page, back logged in
    expect(page.locator("#kite-login")).to_have_text("Log in to Kite")
    page.click("#kite-login")
    expect(page.locator("h1")).to_contain_text("kitesim")
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    expect(page.locator("body")).to_contain_text("logged in as")
    page.goto(console + "/")
    expect(page.locator(".card", has_text="Kite session")).to_contain_text("valid")
    _shoot(page, shots / "today.png")

    # -- a fill appears live: the orders page is open, someone else's order fills
    page.goto(console + "/orders")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__notReloaded = true")
    order = {"client_order_id": "elsewhere-1", "symbol": "INFY", "side": "BUY", "quantity": 1}
    placed = httpx.post(f"{url['engine']}/engine/orders", headers=auth, json=order, timeout=30)
    assert placed.status_code == 202, placed.text
    row = page.locator("#orders tr", has_text="elsewhere-1")
    expect(row).to_contain_text("COMPLETE", timeout=60_000)
    expect(page.locator("#positions")).to_contain_text("INFY")
    assert page.evaluate("window.__notReloaded") is True  # no reload: the event did it
    page.locator("#orders a", has_text="elsewhere-1").click()
    expect(page.locator("#audit-result")).to_contain_text("fill 1 @")
    expect(page.locator("#fills")).to_contain_text("elsewhere-1")

    # -- a LIMIT order below the market rests open: modify its price, then cancel it
    paid = Decimal(api("GET", "broker", "/orders/elsewhere-1")["average_price"])
    tick = Decimal("0.05")
    limit = (paid * Decimal("0.95") / tick).to_integral_value() * tick
    page.fill("#hand-symbol", "INFY")
    page.fill("#hand-qty", "1")
    page.fill("#hand-price", str(limit))
    page.click("#hand-form button[type=submit]")
    resting = page.locator("#open-orders tr", has_text="LIMIT")
    expect(resting).to_contain_text("OPEN", timeout=60_000)
    coid = resting.locator("td").first.inner_text()
    lower = limit - Decimal("1")
    resting.locator("input[aria-label='new price']").fill(str(lower))
    resting.locator("button", has_text="Modify").click()
    wait_until(
        lambda: Decimal(api("GET", "broker", f"/orders/{coid}")["price"]) == lower,
        timeout=60,
        message="the new price at the broker",
    )
    resting = page.locator("#open-orders tr", has_text=coid)
    resting.locator("button", has_text="Cancel").click()
    _confirm(page)
    expect(page.locator("#orders tr", has_text=coid)).to_contain_text("CANCELLED", timeout=60_000)
    expect(page.locator("#open-orders")).to_have_count(0)
    _shoot(page, shots / "orders.png")

    # -- engage the kill switch (with confirmation), then an order by hand is refused
    page.goto(console + "/")
    page.click("#ks-engage")
    _confirm(page)
    expect(page.locator("#ks-release")).to_be_visible()
    assert api("GET", "broker", "/kill-switch")["engaged"] is True
    wait_until(
        lambda: api("GET", "engine", "/engine/status")["kill_switch"],
        timeout=30,
        message="the engine hears of the kill switch",
    )
    page.goto(console + "/orders")
    page.fill("#hand-symbol", "TCS")
    page.fill("#hand-qty", "1")
    page.click("#hand-form button[type=submit]")
    expect(page.locator("#hand-refused")).to_contain_text("kill_switch")
    page.goto(console + "/")
    page.click("#ks-release")
    _confirm(page)
    expect(page.locator("#ks-engage")).to_be_visible()
    assert api("GET", "broker", "/kill-switch")["engaged"] is False

    # -- pause a strategy's entries
    page.goto(console + "/strategies")
    page.click("#disable-sim-demo-sma")
    _confirm(page)
    expect(page.locator("#enable-sim-demo-sma")).to_be_visible()
    assert api("GET", "engine", "/engine/status")["strategies"]["sim-demo-sma"]["enabled"] is False
    expect(page.locator("#decisions")).to_be_visible()
    _shoot(page, shots / "strategies.png")

    # -- a bad backtest gets a clear message, a good one runs; open its report
    page.goto(console + "/backtests")
    page.fill("#bt-symbols", "INFY")
    page.fill("#bt-params", '{"fast_bars": 10}')
    page.click("#bt-form button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("slow_bars")
    page.fill("#bt-params", '{"fast_bars": 5, "slow_bars": 20}')
    page.fill("#bt-from", "2023-01-01")
    page.fill("#bt-to", "2023-06-30")
    page.click("#bt-form button[type=submit]")
    expect(page.locator("#runs tbody tr").first).to_contain_text("done", timeout=120_000)
    with page.expect_popup() as popup:
        page.locator("#runs .report-link").first.click()
    report = popup.value
    expect(report.locator("body")).to_contain_text("INFY")
    report.close()
    # a second run with other parameters, then the two side by side
    page.fill("#bt-params", '{"fast_bars": 10, "slow_bars": 30}')
    page.click("#bt-form button[type=submit]")
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    expect(page.locator("#runs tbody tr").first).to_contain_text("done", timeout=120_000)
    page.click("#cmp-form button[type=submit]")
    expect(page.locator("#cmp-result")).to_contain_text("total_pnl_rupees")
    # a sweep over two points of the same range, ranked, with its best point's report
    page.fill("#sw-grid", '{"fast_bars": [5, 10], "slow_bars": [30]}')
    page.click("#sw-form button[type=submit]")
    expect(page.locator("#sweeps tbody tr").first).to_contain_text("done", timeout=120_000)
    expect(page.locator("#sweeps tbody tr").first).to_contain_text("2/2")
    expect(page.locator("#live")).to_have_text("live")  # the page's event stream held
    _shoot(page, shots / "backtests.png")

    # -- reconcile on demand; a dead letter listed and replayed
    bus = redis.Redis.from_url(stack["redis_url"])
    stranded = KillSwitchReleased(released_by="ops")
    fields: dict[str, Any] = Envelope.wrap(stranded, source="test").to_fields()
    fields |= {"dlq_stream": SYSTEM_EVENTS, "dlq_entry_id": "1-0", "dlq_group": "engine",
               "dlq_error": "boom", "dlq_reason": "failed", "dlq_deliveries": "5",
               "dlq_failures": "5", "dlq_lossless": "1",
               "dlq_at": "2024-01-02T04:00:00+00:00"}  # fmt: skip
    bus.xadd(dlq_name(SYSTEM_EVENTS), fields)
    page.goto(console + "/reconcile")
    expect(page.locator("main")).to_contain_text("Ledger against the broker")
    page.click("#reconcile-broker")
    expect(page.locator("#reconcile-broker-result")).to_contain_text("clean", timeout=60_000)
    expect(page.locator("#dlq")).to_contain_text("KillSwitchReleased")
    _shoot(page, shots / "reconcile.png")
    page.locator("#dlq button", has_text="Replay").click()
    _confirm(page)
    expect(page.locator("main")).to_contain_text("no dead letters")
    assert bus.xlen(dlq_name(SYSTEM_EVENTS)) == 0
    assert errors == []

    # -- a phone: every page fits the screen's width (tables scroll inside their card)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    cookies = page.context.cookies()
    phone.add_cookies(cookies)
    small = phone.new_page()
    for path in ("/", "/orders", "/strategies", "/backtests", "/reconcile"):
        small.goto(console + path)
        expect(small.locator("main h1")).to_be_visible()
        expect(small.locator("main")).not_to_contain_text("Loading")
        overflow = small.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{path} is {overflow}px wider than a phone"
    small.goto(console + "/")
    expect(small.locator(".card", has_text="Kill switch")).to_be_visible()
    _shoot(small, shots / "today-phone.png")
    phone.close()
