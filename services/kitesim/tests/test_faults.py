import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from .conftest import API_KEY


def test_injected_statuses_are_consumed_in_order(kitesim, kite):
    kitesim.control("/faults", {"kind": "status", "status": 429, "count": 2, "route": "quote"})
    kitesim.control("/faults", {"kind": "status", "status": 502, "html": True, "route": "other"})
    for _ in range(2):
        with pytest.raises(kex.NetworkException) as exc:
            kite.ltp("NSE:RELIANCE")
        assert exc.value.code == 429
    kite.ltp("NSE:RELIANCE")  # the third passes
    with pytest.raises(kex.DataException):  # a gateway's HTML page
        kite.profile()
    kite.profile()
    kitesim.control("/faults", {"kind": "status", "status": 500})
    with pytest.raises(kex.GeneralException) as exc:
        kite.orders()
    assert exc.value.code == 500


def test_order_accepted_but_reply_times_out(kitesim):
    slow = KiteConnect(api_key=API_KEY, root=kitesim.root, timeout=0.3)
    slow.generate_session(kitesim.request_token(), api_secret="kitesim_secret_0123456789")
    kitesim.advance(seconds=60)
    kitesim.control("/faults", {"kind": "timeout_after_accept", "seconds": 1, "route": "orders"})
    with pytest.raises(requests.exceptions.Timeout):
        slow.place_order(
            "regular", "NSE", "RELIANCE", "BUY", 1, "CNC", "LIMIT", price=1100.0, tag="lost-reply"
        )
    book = KiteConnect(api_key=API_KEY, root=kitesim.root, access_token=slow.access_token)
    assert [o["tag"] for o in book.orders()] == ["lost-reply"]  # it was placed


def test_reject_next_orders(kitesim, kite):
    kitesim.advance(seconds=60)
    kitesim.control("/orders/reject", {"count": 1, "message": "RMS: blocked"})
    first = kite.place_order("regular", "NSE", "RELIANCE", "BUY", 1, "CNC", "LIMIT", price=1100.0)
    second = kite.place_order("regular", "NSE", "RELIANCE", "BUY", 1, "CNC", "LIMIT", price=1100.0)
    assert kite.order_history(first)[-1]["status"] == "REJECTED"
    assert kite.order_history(first)[-1]["status_message"] == "RMS: blocked"
    assert kite.order_history(second)[-1]["status"] == "OPEN"


def test_rate_limits_answer_429(kitesim, kite):
    kitesim.control("/rate-limits", {"route": "quote", "per_second": 0.001})
    kite.ltp("NSE:RELIANCE")
    with pytest.raises(kex.NetworkException, match="Too many requests"):
        kite.ltp("NSE:RELIANCE")
    kite.profile()  # other classes are not affected


def test_bad_input_never_500s_and_server_keeps_running(kitesim, kite):
    import httpx

    headers = {"Authorization": f"token {API_KEY}:{kite.access_token}"}
    for method, path, params in [
        ("GET", "/instruments/historical/abc/day", {"from": "2024-01-01", "to": "2024-01-02"}),
        ("GET", "/instruments/historical/738561/day", {}),
        ("POST", "/orders/regular", {}),
        (
            "POST",
            "/orders/regular",
            {
                "exchange": "NSE",
                "tradingsymbol": "RELIANCE",
                "transaction_type": "BUY",
                "quantity": "ten",
                "product": "CNC",
                "order_type": "LIMIT",
                "price": "1",
            },
        ),
        ("POST", "/orders/bracket", {}),
        ("PUT", "/orders/regular/123", {}),
        ("GET", "/quote", {}),
        ("GET", "/nosuchroute", {}),
    ]:
        r = httpx.request(
            method,
            f"{kitesim.root}{path}",
            params=params if method == "GET" else None,
            data=params if method != "GET" else None,
            headers=headers,
        )
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        body = r.json()
        assert body["status"] == "error" and body["error_type"] and body["message"]
    assert kite.profile()["user_id"] == "KS0001"
