from datetime import date, datetime

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


def test_intraday_and_resampled_candles(kite):
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
        candles = kite.historical_data(424961, "2024-01-01", "2024-01-10", "day")
        assert [c["close"] for c in candles] == [105, 102]
        server.advance(ticks=1)
        assert kite.ltp("NSE:ITC")["NSE:ITC"]["last_price"] == 100  # replayed: the open
    finally:
        server.stop()


def test_app_builds_without_a_server():
    app = build_app(KitesimSettings(kitesim_session_seconds=0))
    assert app.state.sim.clock.day == date(2024, 1, 2)
