from datetime import date, datetime
from decimal import Decimal

import httpx
import pytest
from kiteconnect import exceptions as kex

from dalal_kitesim.app import build_app
from dalal_kitesim.config import KitesimSettings

from .conftest import Kitesim

RELIANCE, NIFTY = 738561, 256265


@pytest.fixture(scope="module")
def kite(shared_kitesim):
    return shared_kitesim.client()


def test_instruments_dump_parses_with_the_official_client(kite):
    rows = kite.instruments()
    by_symbol = {r["tradingsymbol"]: r for r in rows}
    assert by_symbol["RELIANCE"]["instrument_token"] == RELIANCE
    assert by_symbol["NIFTY 50"]["segment"] == "INDICES"
    assert len(kite.instruments("NSE")) == len(rows)
    with pytest.raises(kex.InputException):
        kite.instruments("MCX")


def test_daily_candles_from_real_bars(kite, shared_kitesim):
    candles = kite.historical_data(RELIANCE, "2023-01-01", "2023-01-31", "day")
    assert len(candles) == 21  # January 2023 trading days (26th a holiday)
    first = candles[0]
    assert first["date"].date() == date(2023, 1, 2)
    assert first["date"].utcoffset().total_seconds() == 19800
    assert first["low"] <= first["open"] <= first["high"]
    raw = httpx.get(
        f"{shared_kitesim.root}/instruments/historical/{RELIANCE}/day",
        params={"from": "2023-01-02", "to": "2023-01-02", "oi": 1},
        headers={"Authorization": f"token {kite.api_key}:{kite.access_token}"},
    ).json()
    (row,) = raw["data"]["candles"]
    assert row[0] == "2023-01-02T00:00:00+0530"
    assert len(row) == 7 and row[6] == 0


def test_intraday_and_resampled_candles(kite, shared_kitesim):
    shared_kitesim.advance(until="2024-01-03T09:30:00+05:30")  # 2 January is history now
    bars15 = kite.historical_data(
        RELIANCE, "2024-01-02 09:15:00", "2024-01-02 15:29:59", "15minute"
    )
    assert len(bars15) == 25
    assert bars15[0]["date"].strftime("%H:%M") == "09:15"
    bars60 = kite.historical_data(
        RELIANCE, "2024-01-02 09:15:00", "2024-01-02 15:29:59", "60minute"
    )
    assert [b["date"].strftime("%H:%M") for b in bars60] == [
        "09:15",
        "10:15",
        "11:15",
        "12:15",
        "13:15",
        "14:15",
        "15:15",
    ]
    assert bars60[0]["open"] == bars15[0]["open"]
    assert bars60[0]["high"] == max(b["high"] for b in bars15[:4])
    assert bars60[0]["volume"] == sum(b["volume"] for b in bars15[:4])
    minute = kite.historical_data(NIFTY, "2024-01-02 09:15:00", "2024-01-02 09:19:00", "minute")
    assert len(minute) == 5
    five = kite.historical_data(NIFTY, "2024-01-02 09:15:00", "2024-01-02 10:14:00", "5minute")
    assert len(five) == 12


@pytest.mark.parametrize(
    ("token", "interval", "start", "end", "message"),
    [
        (RELIANCE, "minute", "2024-01-01", "2024-03-15", "60 days"),
        (RELIANCE, "15minute", "2023-01-01", "2024-01-01", "200 days"),
        (RELIANCE, "day", "2010-01-01", "2024-01-01", "2000 days"),
        (RELIANCE, "2minute", "2024-01-01", "2024-01-02", "interval"),
        (RELIANCE, "day", "2024-02-01", "2024-01-01", "after"),
        (RELIANCE, "day", "yesterday", "2024-01-01", "from"),
        (999999999, "day", "2024-01-01", "2024-01-02", "instrument"),
    ],
)
def test_bad_historical_requests_get_input_exception(kite, token, interval, start, end, message):
    with pytest.raises(kex.InputException, match=message):
        kite.historical_data(token, start, end, interval)


def test_continuous_is_for_futures_only(kite):
    with pytest.raises(kex.InputException, match="futures"):
        kite.historical_data(RELIANCE, "2024-01-01", "2024-01-05", "day", continuous=True)


def test_quotes_follow_the_replay(shared_kitesim, kite):
    shared_kitesim.advance(seconds=1800)
    ltp = kite.ltp("NSE:RELIANCE", "NSE:NIFTY 50", "NSE:NOSUCH")
    assert set(ltp) == {"NSE:RELIANCE", "NSE:NIFTY 50"}
    state = shared_kitesim.sim.clock.state(RELIANCE)
    assert ltp["NSE:RELIANCE"]["last_price"] == float(state.last_price)
    ohlc = kite.ohlc("NSE:RELIANCE")["NSE:RELIANCE"]
    assert ohlc["ohlc"]["low"] <= ohlc["last_price"] <= ohlc["ohlc"]["high"]
    q = kite.quote(["NSE:RELIANCE"])["NSE:RELIANCE"]
    assert isinstance(q["timestamp"], datetime)
    assert q["volume"] > 0 and len(q["depth"]["buy"]) == 5
    assert q["depth"]["buy"][0]["price"] < q["last_price"] < q["depth"]["sell"][0]["price"]
    with pytest.raises(kex.InputException):
        kite.quote()


def test_a_user_directory_of_csv_is_served_first(tmp_path):
    day = tmp_path / "daily"
    day.mkdir()
    (day / "ITC.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,100,110,95,105,1000\n2024-01-03,105,106,101,102,900\n"
    )
    server = Kitesim(kitesim_data_dir=tmp_path).start()
    try:
        kite = server.client()
        server.advance(ticks=1)
        assert kite.ltp("NSE:ITC")["NSE:ITC"]["last_price"] == 100  # replayed: the open
        server.advance(until="2024-01-03T15:45:00+05:30")
        candles = kite.historical_data(424961, "2024-01-01", "2024-01-10", "day")
        assert [c["close"] for c in candles] == [105, 102]
    finally:
        server.stop()


def test_app_builds_without_a_server():
    app = build_app(KitesimSettings(kitesim_session_seconds=0))
    assert app.state.sim.clock.day == date(2024, 1, 2)


def _candle_table(rows):
    import pyarrow as pa

    from dalal_shared.candlestore import SCHEMA

    names = SCHEMA.names
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows], schema=SCHEMA)


def test_a_dalal_parquet_cache_is_served(tmp_path):
    """`<dir>/<EXCHANGE>/<interval>/<SYMBOL>.parquet` as the data service's candlestore writes
    it (ts UTC, float64 prices, oi) comes back through the official client."""
    from datetime import UTC

    from dalal_shared import candlestore

    daily = [  # Kite's daily bars start at 00:00 IST = 18:30 UTC the day before
        (datetime(2024, 1, 1, 18, 30, tzinfo=UTC), 100.0, 110.5, 95.25, 105.05, 1000, 0),
        (datetime(2024, 1, 2, 18, 30, tzinfo=UTC), 105.05, 106.0, 101.1, 102.3, 900, 0),
    ]
    minute = [  # 09:15 and 09:16 IST, with open interest
        (datetime(2024, 1, 2, 3, 45, tzinfo=UTC), 250.5, 251.0, 250.0, 250.75, 300, 7000),
        (datetime(2024, 1, 2, 3, 46, tzinfo=UTC), 250.75, 252.35, 250.6, 252.0, 410, 7100),
    ]
    candlestore.write(tmp_path, "NSE", "day", "ITC", _candle_table(daily))
    candlestore.write(tmp_path, "NSE", "minute", "ITC", _candle_table(minute))
    assert candlestore.cached_files(tmp_path) == [("NSE", "day", "ITC"), ("NSE", "minute", "ITC")]
    server = Kitesim(kitesim_data_dir=tmp_path).start()
    try:
        kite = server.client()
        # the Parquet instrument is replayed by the market clock like a CSV one
        server.advance(ticks=1)
        assert kite.ltp("NSE:ITC")["NSE:ITC"]["last_price"] == 250.5
        server.advance(until="2024-01-03T15:45:00+05:30")  # both days are history now
        days = kite.historical_data(424961, "2024-01-01", "2024-01-10", "day")
        assert [(c["date"].date(), c["open"], c["high"], c["low"], c["close"]) for c in days] == [
            (date(2024, 1, 2), 100.0, 110.5, 95.25, 105.05),
            (date(2024, 1, 3), 105.05, 106.0, 101.1, 102.3),
        ]
        assert [c["volume"] for c in days] == [1000, 900]
        got = kite.historical_data(
            424961, "2024-01-02 09:15:00", "2024-01-02 15:30:00", "minute", oi=True
        )
        assert [
            (c["date"], c["open"], c["high"], c["low"], c["close"], c["volume"], c["oi"])
            for c in got
        ] == [(row[0], *row[1:]) for row in minute]
        # an interval without a file of its own is built from the minute bars
        (five,) = kite.historical_data(
            424961, "2024-01-02 09:15:00", "2024-01-02 15:30:00", "5minute", oi=True
        )
        assert (five["open"], five["high"], five["close"], five["volume"], five["oi"]) == (
            250.5,
            252.35,
            252.0,
            710,
            7100,
        )
    finally:
        server.stop()


def _replayed_prices(noise: str) -> dict[int, list[object]]:
    """RELIANCE's and SBIN's ticks over the first half hour of 2 January 2024."""
    app = build_app(
        KitesimSettings(
            kitesim_session_seconds=0, kitesim_tick_interval_seconds=5, kitesim_tick_noise_bps=noise
        )
    )
    clock = app.state.sim.clock
    seen: dict[int, list[object]] = {}
    clock.listeners.ticks.append(
        lambda batch: [seen.setdefault(token, []).append(tick) for token, tick in batch]
    )
    clock.run_until(datetime.fromisoformat("2024-01-02T09:45:00+05:30"))
    return seen


def test_tick_noise_for_load_tests_is_seeded_inside_the_bar_and_off_by_default():
    plain, noisy, again = _replayed_prices("0"), _replayed_prices("20"), _replayed_prices("20")
    assert [t.price for t in noisy[RELIANCE]] == [t.price for t in again[RELIANCE]]
    for token, ticks in noisy.items():
        base = plain[token]
        assert [t.ts for t in ticks] == [t.ts for t in base]
        assert ticks[0].price == base[0].price  # the open stays
        for tick, ref in zip(ticks, base, strict=True):
            assert abs(tick.price - ref.price) <= ref.price * 20 / 10_000 + Decimal("0.05")
            assert (tick.price / Decimal("0.05")) % 1 == 0  # on the tick grid
    assert any(t.price != r.price for t, r in zip(noisy[RELIANCE], plain[RELIANCE], strict=True))


def test_a_replay_past_the_data_says_it_is_exhausted():
    """The bundled daily bars end 2025-09-30; the clock runs on past it, with sessions that
    have no ticks, and the state and readiness say so (what `dalal run` prints from)."""
    server = Kitesim(kitesim_start_date=date(2025, 9, 29)).start()
    try:
        state = server.control("/state", method="GET")
        assert (state["replay_last_day"], state["replay_exhausted"]) == ("2025-09-30", False)
        assert server.advance(until="2025-09-30T15:45:00+05:30")["ticks"] > 0
        assert server.control("/state", method="GET")["replay_exhausted"] is False
        assert server.advance(until="2025-10-01T15:45:00+05:30")["ticks"] == 0
        state = server.control("/state", method="GET")
        assert (state["day"], state["replay_exhausted"]) == ("2025-10-01", True)
        ready = httpx.get(f"{server.root}/readyz", timeout=10)
        assert ready.status_code == 200  # the books are still served
        assert ready.json()["checks"]["replay"].startswith("exhausted")
    finally:
        server.stop()
