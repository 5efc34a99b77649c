"""Any interval in, any symbol priced: a user's 5-minute file replays as 5-minute bars (not
rebuilt from or overridden by bundled data), every NIFTY 50 symbol has a quote out of the box,
and an order on an instrument kitesim has no prices for is rejected at once with the reason."""

from __future__ import annotations

from pathlib import Path

from kiteconnect import KiteConnect

from .conftest import Kitesim

INFY = 408065
# the NIFTY 50 of September 2025 (ETERNAL is ZOMATO in the bundled late-2023 instruments dump)
NIFTY_50 = [
    "ADANIENT",
    "ADANIPORTS",
    "APOLLOHOSP",
    "ASIANPAINT",
    "AXISBANK",
    "BAJAJ-AUTO",
    "BAJAJFINSV",
    "BAJFINANCE",
    "BEL",
    "BHARTIARTL",
    "CIPLA",
    "COALINDIA",
    "DRREDDY",
    "EICHERMOT",
    "ZOMATO",
    "GRASIM",
    "HCLTECH",
    "HDFCBANK",
    "HDFCLIFE",
    "HEROMOTOCO",
    "HINDALCO",
    "HINDUNILVR",
    "ICICIBANK",
    "INDUSINDBK",
    "INFY",
    "ITC",
    "JIOFIN",
    "JSWSTEEL",
    "KOTAKBANK",
    "LT",
    "M&M",
    "MARUTI",
    "NESTLEIND",
    "NTPC",
    "ONGC",
    "POWERGRID",
    "RELIANCE",
    "SBILIFE",
    "SBIN",
    "SHRIRAMFIN",
    "SUNPHARMA",
    "TATACONSUM",
    "TATAMOTORS",
    "TATASTEEL",
    "TCS",
    "TECHM",
    "TITAN",
    "TRENT",
    "ULTRACEMCO",
    "WIPRO",
]

FIVE = """date,open,high,low,close,volume
2024-01-02T09:15:00+05:30,1000,1010,995,1005,5000
2024-01-02T09:20:00+05:30,1005,1020,1001,1018,4000
2024-01-02T09:25:00+05:30,1018,1019,990,992,3000
2024-01-02T09:30:00+05:30,992,1000,985,999,2000
"""


def test_a_users_five_minute_file_replays_as_five_minute_bars(tmp_path: Path) -> None:
    (tmp_path / "5minute").mkdir()
    (tmp_path / "5minute" / "INFY.csv").write_text(FIVE)  # bundled INFY: 15-minute and day
    sim = Kitesim(kitesim_data_dir=tmp_path, kitesim_history_after_now=False).start()
    try:
        kite = sim.client()
        closes = []
        for minute in ("09:19:30", "09:24:30", "09:29:30", "09:34:30"):
            sim.advance(until=f"2024-01-02T{minute}+05:30")
            closes.append(kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"])
        assert closes == [1005, 1018, 992, 999]  # each 5-minute bar ends at its own close
        five = kite.historical_data(INFY, "2024-01-02 09:15:00", "2024-01-02 09:34:00", "5minute")
        assert [c["close"] for c in five] == [1005, 1018, 992, 999]
        (fifteen, rest) = kite.historical_data(
            INFY, "2024-01-02 09:15:00", "2024-01-02 09:34:00", "15minute"
        )
        # built from the user's bars, not the bundled 15-minute file
        assert (fifteen["open"], fifteen["high"], fifteen["low"], fifteen["close"]) == (
            1000, 1020, 990, 992,
        )  # fmt: skip
        assert fifteen["volume"] == 12000 and rest["close"] == 999
    finally:
        sim.stop()


def test_every_nifty_50_symbol_has_a_quote(shared_kitesim: Kitesim) -> None:
    kite: KiteConnect = shared_kitesim.client()
    shared_kitesim.advance(seconds=600)
    keys = [f"NSE:{s}" for s in NIFTY_50] + ["NSE:NIFTY 50"]
    quotes = kite.quote(keys)
    assert sorted(quotes) == sorted(keys)
    assert all(q["last_price"] > 0 and q["volume"] >= 0 for q in quotes.values())


def test_an_order_on_an_instrument_without_prices_is_rejected_with_the_reason(
    shared_kitesim: Kitesim,
) -> None:
    kite: KiteConnect = shared_kitesim.client()
    shared_kitesim.advance(seconds=60)
    assert kite.ltp("NSE:YESBANK") == {}  # in the instruments dump, no bars anywhere
    order_id = kite.place_order(
        "regular", exchange="NSE", tradingsymbol="YESBANK", transaction_type="BUY",
        quantity=1, product="CNC", order_type="LIMIT", price=20.0,
    )  # fmt: skip
    last = kite.order_history(order_id)[-1]
    assert last["status"] == "REJECTED"
    assert "no prices for NSE:YESBANK" in last["status_message"]
