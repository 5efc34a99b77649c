"""`dalal login` completes the broker's Kite session from a pasted redirect URL or token."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from urllib.parse import urlsplit

from .conftest import API_KEY, Broker, Sim


def _dalal(broker: Broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_BROKER_PORT"] = str(urlsplit(broker.url).port)
    env["DALAL_API_KEY"] = API_KEY
    return subprocess.run(
        [sys.executable, "-m", "dalal_shared.cli", "login", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_login_with_a_pasted_redirect_url(start_broker, kitesim: Sim) -> None:
    broker = start_broker()
    assert broker.get("/session").json()["valid"] is False
    redirect = (
        f"http://127.0.0.1:8001/session/callback?status=success&request_token="
        f"{kitesim.request_token()}"
    )
    done = _dalal(broker, stdin=redirect + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/connect/login?api_key=kitesim_key" in done.stdout  # the URL to open was printed
    assert broker.get("/session").json()["valid"] is True


def test_login_refuses_a_bad_token_naming_it(start_broker) -> None:
    broker = start_broker()
    bad = _dalal(broker, "--request-token", "not a token!")
    assert bad.returncode == 2
    assert "not a token!" in bad.stderr
    refused = _dalal(broker, "--request-token", "abcdef123456")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert broker.get("/session").json()["valid"] is False


def test_login_finishes_by_itself_when_the_browser_reaches_the_callback(
    start_broker, kitesim: Sim
) -> None:
    """Nothing pasted: the browser's login at kitesim and its redirect to the broker's
    callback are enough, `dalal login` notices and exits."""
    import httpx

    from dalal_shared.testing import wait_until

    broker = start_broker()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_BROKER_PORT"] = str(urlsplit(broker.url).port)
    env["DALAL_API_KEY"] = API_KEY
    proc = subprocess.Popen(
        [sys.executable, "-m", "dalal_shared.cli", "login"],
        env=env,
        stdin=subprocess.PIPE,  # open, nothing typed
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(lambda: proc.stdout.read(1), "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        wait_until(lambda: "Waiting" in "".join(seen), message="dalal login waiting")
        # the browser: kitesim's login page (any password), then its redirect to the callback
        login = httpx.post(
            f"{kitesim.root}/connect/login",
            data={"api_key": "kitesim_key", "user_id": "KS0001", "password": "anything"},
            follow_redirects=False,
            timeout=30,
        )
        token = httpx.URL(login.headers["location"]).params["request_token"]
        assert broker.get("/session/callback", params={"request_token": token}).status_code == 200
        assert proc.wait(timeout=60) == 0, "".join(seen)
        reader.join(timeout=10)
        out = "".join(seen)
        assert "logged in" in out
        wait_until(lambda: broker.get("/session").json()["valid"], message="session valid")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
