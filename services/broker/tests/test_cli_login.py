"""`dalal login` completes the broker's Kite session from a pasted redirect URL or token."""

from __future__ import annotations

import os
import subprocess
import sys
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
