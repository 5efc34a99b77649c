"""Served responses have the same keys, value types and envelope as Kite's recorded fixtures."""

import httpx
import pytest

from .conftest import API_KEY, fixture_json

NUMBER = (int, float)


def same_shape(ours, theirs, path="$"):
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        missing = set(theirs) - set(ours)
        assert not missing, f"{path}: missing keys {sorted(missing)}"
        for key in theirs:
            same_shape(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), path
        if theirs and ours:
            same_shape(ours[0], theirs[0], f"{path}[0]")
    elif isinstance(theirs, bool):
        assert isinstance(ours, bool), path
    elif isinstance(theirs, NUMBER):
        assert isinstance(ours, NUMBER) and not isinstance(ours, bool), path
    elif isinstance(theirs, str):
        assert isinstance(ours, str | type(None)), f"{path}: {ours!r}"
    # theirs None: any type is fine (nullable)


@pytest.fixture(scope="module")
def world(shared_kitesim):
    """A session with an open order, a filled order, a position and a holding."""
    k = shared_kitesim
    kite = k.client()
    k.advance(seconds=60)
    filled = kite.place_order(
        "regular", "NSE", "INFY", "BUY", 2, "CNC", "MARKET", market_protection=-1
    )
    kite.place_order("regular", "NSE", "TCS", "BUY", 1, "CNC", "LIMIT", price=1000.0, tag="t1")
    k.advance(seconds=60)
    raw = lambda path, **params: httpx.get(  # noqa: E731
        f"{k.root}{path}",
        params=params,
        headers={"Authorization": f"token {API_KEY}:{kite.access_token}"},
    ).json()
    return kite, raw, filled


CASES = [
    ("profile.json", "/user/profile", {}),
    ("margins.json", "/user/margins", {}),
    ("quote.json", "/quote", {"i": "NSE:INFY"}),
    ("ltp.json", "/quote/ltp", {"i": "NSE:INFY"}),
    ("ohlc.json", "/quote/ohlc", {"i": "NSE:INFY"}),
    ("orders.json", "/orders", {}),
    ("trades.json", "/trades", {}),
    ("positions.json", "/portfolio/positions", {}),
    (
        "historical_minute.json",
        "/instruments/historical/256265/minute",
        {"from": "2024-01-02 09:15:00", "to": "2024-01-02 09:20:00"},
    ),
]


@pytest.mark.parametrize(("fixture", "path", "params"), CASES)
def test_route_matches_fixture_shape(world, fixture, path, params):
    _kite, raw, _filled = world
    theirs = fixture_json(fixture)
    ours = raw(path, **params)
    assert ours["status"] == "success"
    data, expected = ours["data"], theirs["data"]
    if fixture in ("quote.json", "ltp.json", "ohlc.json"):
        data, expected = data["NSE:INFY"], next(iter(expected.values()))
    if fixture == "quote.json":  # the fixture's depth is sparse; compare one level
        expected = {
            **expected,
            "depth": {"buy": expected["depth"]["buy"][:1], "sell": expected["depth"]["sell"][:1]},
        }
    same_shape(data, expected)


def test_order_history_and_order_trades_shapes(world):
    kite, raw, filled = world
    same_shape(raw(f"/orders/{filled}")["data"], fixture_json("order_info.json")["data"])
    same_shape(raw(f"/orders/{filled}/trades")["data"], fixture_json("order_trades.json")["data"])
    history = kite.order_history(filled)  # the official client parses it
    assert history[-1]["status"] == "COMPLETE"


def test_postback_shape(shared_kitesim, world):
    _kite, _raw, filled = world
    order = shared_kitesim.sim.exchange.orders.get(filled)
    same_shape(shared_kitesim.sim.postback_body(order.to_kite()), fixture_json("postback.json"))


def test_holdings_and_session_shapes(world, shared_kitesim):
    _kite, _raw, _ = world
    shared_kitesim.advance(until="2024-01-03T09:16:00+05:30")
    kite2 = shared_kitesim.client()
    holdings = httpx.get(
        f"{shared_kitesim.root}/portfolio/holdings",
        headers={"Authorization": f"token {API_KEY}:{kite2.access_token}"},
    ).json()
    assert holdings["data"], "INFY bought yesterday is a holding today"
    same_shape(holdings["data"], fixture_json("holdings.json")["data"])
    token = shared_kitesim.request_token()
    import hashlib

    checksum = hashlib.sha256((API_KEY + token + "kitesim_secret_0123456789").encode()).hexdigest()
    session = httpx.post(
        f"{shared_kitesim.root}/session/token",
        data={"api_key": API_KEY, "request_token": token, "checksum": checksum},
    ).json()
    same_shape(
        session["data"], {k: v for k, v in fixture_json("generate_session.json")["data"].items()}
    )
