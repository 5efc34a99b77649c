import hashlib
from datetime import datetime

import httpx
import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared.kitesession import token_expiry
from dalal_shared.timeutil import utcnow

from .conftest import API_KEY, API_SECRET, Kitesim


def test_login_page_redirects_with_request_token_and_session_works(shared_kitesim):
    page = httpx.get(f"{shared_kitesim.root}/connect/login", params={"api_key": API_KEY, "v": "3"})
    assert page.status_code == 200 and "<form" in page.text
    kite = KiteConnect(api_key=API_KEY, root=shared_kitesim.root)
    session = kite.generate_session(shared_kitesim.request_token(), api_secret=API_SECRET)
    assert session["user_id"] == "KS0001"
    assert kite.access_token == session["access_token"]
    assert kite.profile()["user_id"] == "KS0001"
    margins = kite.margins()
    assert margins["equity"]["available"]["cash"] == 1_000_000
    assert kite.margins("equity")["net"] == 1_000_000


def test_bad_checksum_and_reused_request_token(shared_kitesim):
    kite = KiteConnect(api_key=API_KEY, root=shared_kitesim.root)
    token = shared_kitesim.request_token()
    with pytest.raises(kex.TokenException):
        kite.generate_session(token, api_secret="wrong")
    kite.generate_session(token, api_secret=API_SECRET)
    with pytest.raises(kex.TokenException):  # a request token is good once
        KiteConnect(api_key=API_KEY, root=shared_kitesim.root).generate_session(token, API_SECRET)


def test_bad_token_gets_kites_token_exception_envelope(shared_kitesim):
    r = httpx.get(
        f"{shared_kitesim.root}/user/profile",
        headers={"Authorization": f"token {API_KEY}:nonsense", "X-Kite-Version": "3"},
    )
    assert r.status_code == 403
    assert r.json() == {
        "status": "error",
        "message": "Incorrect `api_key` or `access_token`.",
        "data": None,
        "error_type": "TokenException",
    }
    expired = []
    kite = KiteConnect(api_key=API_KEY, root=shared_kitesim.root, access_token="nonsense")
    kite.set_session_expiry_hook(lambda: expired.append(True))
    with pytest.raises(kex.TokenException):
        kite.positions()
    assert expired == [True]


def test_logout_invalidates_the_token(shared_kitesim):
    kite = shared_kitesim.client()
    assert kite.invalidate_access_token() is True
    with pytest.raises(kex.TokenException):
        kite.profile()


def test_checksum_is_sha256_of_key_token_secret(shared_kitesim):
    token = shared_kitesim.request_token()
    checksum = hashlib.sha256((API_KEY + token + API_SECRET).encode()).hexdigest()
    r = httpx.post(
        f"{shared_kitesim.root}/session/token",
        data={"api_key": API_KEY, "request_token": token, "checksum": checksum},
    )
    assert r.status_code == 200 and r.json()["data"]["access_token"]


def test_by_default_a_token_lives_on_the_wall_clock_across_simulated_days(kitesim):
    kite = kitesim.client()
    state = kitesim.control("/state", method="GET")
    assert state["expiry_clock"] == "wall"
    [live] = state["sessions"]
    assert datetime.fromisoformat(live["expires_at"]) == token_expiry(utcnow())
    kitesim.advance(until="2024-01-09T10:00:00+05:30")  # a week of market time
    assert kite.profile()["user_id"] == "KS0001"


def test_on_the_market_token_clock_a_token_dies_at_six_ist_next_simulated_day(postbacks):
    kitesim = Kitesim(kitesim_expiry_clock="market").start()
    try:
        _dies_at_six(kitesim)
    finally:
        kitesim.stop()


def _dies_at_six(kitesim):
    kite = kitesim.client()
    [live] = kitesim.control("/state", method="GET")["sessions"]
    assert live["expires_at"] == "2024-01-03T00:30:00+00:00"  # 06:00 IST
    kite.profile()
    kitesim.advance(until="2024-01-03T05:59:00+05:30")
    kite.profile()
    kitesim.advance(until="2024-01-03T06:00:00+05:30")
    with pytest.raises(kex.TokenException, match="expired"):
        kite.profile()


def test_fault_api_expires_tokens_now(kitesim):
    kite = kitesim.client()
    kitesim.control("/session/expire")
    with pytest.raises(kex.TokenException):
        kite.margins()
