"""`make run` trades out of the box: `dalal run` with no settings of the user's, a login the way
a browser does it (the broker's login link -> kitesim's login page, any password -> the broker's
callback), and nothing else: the engine, running the default sim strategies, places an order
that fills at kitesim, and the portfolio books it. kitesim runs at its default speed and token
settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dalal_shared.testing import dalal_run, run_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # over the waits' sum

SERVICES = ("broker", "data", "portfolio", "engine", "kitesim")


def test_make_run_and_a_browser_login_reach_an_engine_order_and_its_fill(tmp_path: Path) -> None:
    env = run_env(tmp_path / "var")
    url = {n: f"http://127.0.0.1:{env[f'DALAL_{n.upper()}_PORT']}" for n in SERVICES}
    with dalal_run(env, tmp_path / "run.out"):
        key = (tmp_path / "var" / "api_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}

        def get(service: str, path: str) -> Any:
            r = httpx.get(f"{url[service]}{path}", headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            return r.json()

        # the browser: the broker's login link, kitesim's page, any password, the callback
        page = httpx.get(f"{url['broker']}/session/login", follow_redirects=True, timeout=30)
        assert page.status_code == 200 and "simulator" in page.text.lower()
        assert "any password" in page.text.lower()
        done = httpx.post(
            f"{url['kitesim']}/connect/login",
            data={"api_key": "kitesim_key", "user_id": "KS0001", "password": "anything"},
            follow_redirects=True,
            timeout=60,
        )
        assert done.status_code == 200 and "logged in" in done.text, done.text
        assert get("broker", "/session")["valid"] is True

        def engine_fill() -> list[dict[str, Any]]:
            # no one but the engine places orders here
            return [o for o in get("broker", "/orders") if o["filled_quantity"] > 0]

        filled = wait_until(engine_fill, timeout=180, interval=2, message="an engine order filled")
        assert filled[0]["symbol"] in ("RELIANCE", "TCS", "INFY")
        wait_until(
            lambda: get("portfolio", "/positions?include_closed=true"),
            timeout=60,
            message="the portfolio books the fill",
        )
        # the engine's equity (its daily-loss limit, its sizing) follows the portfolio's at the
        # simulated day's pace (a snapshot a simulated 15 minutes), not a session behind
        wait_until(
            lambda: get("engine", "/engine/status")["equity_rupees"] != "1000000.00",
            timeout=30,
            message="the engine hears the equity move",
        )
        assert get("engine", "/engine/status")["mode"] == "running"
        assert get("broker", "/session")["valid"] is True  # still, a replayed day or more later

        # by hand through the engine: a huge MARKET order is valued at the broker's quote and
        # refused by the engine's risk manager, never reaching the broker; a small one goes
        def by_hand(coid: str, quantity: int) -> httpx.Response:
            order = {"client_order_id": coid, "symbol": "INFY", "side": "BUY", "quantity": quantity}
            target = f"{url['engine']}/engine/orders"
            return httpx.post(target, headers=auth, json=order, timeout=30)

        huge = by_hand("hand-huge", 10_000_000)
        assert (huge.status_code, huge.json()["reason"]) == (422, "position_cap"), huge.text
        assert all(o["client_order_id"] != "hand-huge" for o in get("broker", "/orders"))
        small = by_hand("hand-small", 1)
        assert small.status_code == 202, small.text
        placed = wait_until(
            lambda: [o for o in get("broker", "/orders") if o["client_order_id"] == "hand-small"],
            timeout=60,
            message="the hand-sent order at the broker",
        )
        assert placed[0]["quantity"] == 1
        wait_until(
            lambda: get("engine", "/engine/orders/hand-small")["status"] != "SUBMITTED",
            timeout=60,
            message="the engine hears what became of it",
        )
