import base64
import threading
from decimal import Decimal

import pytest
from kiteconnect import KiteTicker
from twisted.internet import reactor

from dalal_kitesim.ticker import decode_packet, frame, split_frame
from dalal_shared.testing import wait_until

from .conftest import API_KEY, FIXTURES, fixture_json

RELIANCE, NIFTY = 738561, 256265
PY_NAMES = {  # Python KiteTicker field -> Kite fixture (JS) field
    "last_traded_quantity": "last_quantity",
    "average_traded_price": "average_price",
    "volume_traded": "volume",
    "total_buy_quantity": "buy_quantity",
    "total_sell_quantity": "sell_quantity",
}


@pytest.mark.parametrize("name", ["quote", "full"])
def test_fixture_packets_decode_like_kites_json(name):
    packet = base64.b64decode((FIXTURES / f"ticker_{name}.packet").read_text())
    assert len(packet) == {"quote": 44, "full": 184}[name]
    ours = decode_packet(packet)
    expected = fixture_json(f"ticker_{name}.json")
    # `change` in the fixture is not derivable from the packet (5.9 for both, whatever the
    # price); every field the packet carries must match exactly.
    ours.pop("change")
    expected = {k: v for k, v in expected.items() if k != "change"}
    assert ours == expected
    # and KiteTicker's own parser agrees with the fixture (modulo its Python field names)
    parsed = KiteTicker(API_KEY, "x")._parse_binary(frame([packet]))[0]
    for py, js in PY_NAMES.items():
        assert parsed[py] == expected[js]
    assert parsed["ohlc"] == expected["ohlc"]
    assert split_frame(frame([packet, packet])) == [packet, packet]


def test_kiteticker_streams_ticks_and_order_updates(kitesim):
    kite = kitesim.client()
    kitesim.advance(seconds=60)
    ticks, orders, connected = [], [], threading.Event()
    kws = KiteTicker(API_KEY, kite.access_token, root=kitesim.ws_root, reconnect=False)

    def on_connect(ws, _response):
        ws.subscribe([RELIANCE, NIFTY])
        ws.set_mode(ws.MODE_FULL, [RELIANCE])
        ws.set_mode(ws.MODE_LTP, [NIFTY])
        connected.set()

    kws.on_ticks = lambda _ws, t: ticks.extend(t)
    kws.on_connect = on_connect
    kws.on_order_update = lambda _ws, data: orders.append(data)
    kws.connect(threaded=True)
    try:
        wait_until(connected.is_set, message="ticker connected")
        wait_until(
            lambda: (
                kitesim.sim.hub.connections
                and all(len(c.modes) == 2 for c in kitesim.sim.hub.connections)
            ),
            message="subscribed",
        )
        kitesim.advance(seconds=120)
        state = kitesim.sim.clock.state(RELIANCE)

        def latest_full():
            full = [t for t in ticks if t["instrument_token"] == RELIANCE and t["mode"] == "full"]
            return full and full[-1]["last_price"] == float(state.last_price) and full[-1]

        full = wait_until(latest_full, message="the last full tick")
        assert full["volume_traded"] == state.volume
        assert len(full["depth"]["buy"]) == 5 and full["tradable"] is True
        nifty = wait_until(
            lambda: [t for t in ticks if t["instrument_token"] == NIFTY], message="nifty"
        )[-1]
        assert nifty["mode"] == "ltp" and nifty["tradable"] is False
        steps = (state.last_price * Decimal("1.02") / Decimal("0.05")).quantize(Decimal(1))
        price = float(steps * Decimal("0.05"))  # above the market: fills at the next tick
        oid = kite.place_order(
            "regular", "NSE", "RELIANCE", "BUY", 1, "MIS", "LIMIT", price=price, tag="ws1"
        )
        kitesim.advance(seconds=60)
        update = wait_until(
            lambda: [o for o in orders if o["order_id"] == oid], message="order update"
        )
        # as on Kite: nothing for the accepted order, then its completion
        assert [u["status"] for u in update] == ["COMPLETE"] and update[0]["tag"] == "ws1"
        # a silent ticker keeps the connection open but sends nothing, heartbeats included
        kitesim.control("/ticker/silence", {"silent": True})
        seen = len(ticks)
        kitesim.advance(seconds=300)
        assert len(ticks) == seen and kws.is_connected()
        kitesim.control("/ticker/silence", {"silent": False})
        kitesim.advance(seconds=60)
        wait_until(lambda: len(ticks) > seen, message="ticks again")
    finally:
        reactor.callFromThread(kws.close)


def test_bad_token_is_refused(kitesim):
    import httpx

    r = httpx.get(
        f"{kitesim.root}/?api_key={API_KEY}&access_token=bad",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        },
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("last", "tick", "spread"),
    [
        ("2543.35", "0.05", "2"),
        ("99.99", "0.01", "0"),
        ("21712.00", "0.05", "7.5"),
        ("101.123", "0.05", "2"),  # not a whole number of paise: the Decimal path
        ("0.05", "0.05", "2"),
    ],
)
def test_full_packet_depth_matches_synthetic_depth(last, tick, spread):
    """The integer fast path of `pack_full` packs exactly what `synthetic_depth` describes."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from dalal_kitesim.clock import MarketState
    from dalal_kitesim.marketdata import Instrument
    from dalal_kitesim.ticker import pack_full, paise, synthetic_depth

    inst = Instrument(1, 1, "X", "X", Decimal(tick), 1, "EQ", "NSE", "NSE")
    price = Decimal(last)
    moment = datetime(2024, 1, 2, 4, tzinfo=UTC)
    state = MarketState(
        inst,
        prev_close=price,
        open=price,
        high=price,
        low=price,
        last_price=price,
        last_quantity=7,
        volume=700,
        turnover=price * 700,
        last_trade_time=moment,
        timestamp=moment,
    )
    try:
        bids, asks = synthetic_depth(state, Decimal(spread))
        want = [(b.quantity, paise(b.price), b.orders) for b in bids + asks]
    except Exception:
        want = None
    if want is None or any(p < 0 for _q, p, _o in want):
        return  # a price below zero cannot be packed either way
    packet = pack_full(state, Decimal(spread))
    assert len(packet) == 184
    got = [
        (
            int.from_bytes(packet[64 + 12 * i : 68 + 12 * i]),
            int.from_bytes(packet[68 + 12 * i : 72 + 12 * i]),
            int.from_bytes(packet[72 + 12 * i : 74 + 12 * i]),
        )
        for i in range(10)
    ]
    assert got == want
    side = sum(q for q, _p, _o in want[:5])
    assert int.from_bytes(packet[20:24]) == side == int.from_bytes(packet[24:28])
