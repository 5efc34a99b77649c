"""A small backtest of `swing` on real NSE daily bars, checked by hand: the entry day, size and
price, the partial exits at 1R and 2R, the stop, and Zerodha's charges, each recomputed here
from the raw CSV with independent arithmetic."""

from __future__ import annotations

import csv
import gzip
import math
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP
from decimal import Decimal as D
from pathlib import Path

import pytest

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings
from dalal_engine.risk import MarketState
from dalal_engine.strategyconfig import validate_document
from dalal_shared.timeutil import IST

FIXTURES = Path(__file__).parent / "fixtures"
START = datetime(2021, 1, 1, tzinfo=IST)
CAPITAL = D("1000000")


def rows(symbol: str) -> list[dict[str, object]]:
    with (FIXTURES / f"{symbol}.csv").open() as fh:
        return [
            {
                "day": date.fromisoformat(r["date"]),
                **{k: float(r[k]) for k in ("open", "high", "low", "close")},
            }
            for r in csv.DictReader(fh)
        ]


def run(symbol: str, **market: object) -> BacktestResult:
    cfg = validate_document({"name": "hand", "strategy": "swing", "universe": [symbol]})[0]
    data = {symbol: history.load(symbol, "day", data_dir=FIXTURES)}
    feed = (lambda _at: MarketState(**market)) if market else None  # type: ignore[arg-type]
    return Backtester(cfg, data, BacktestSettings(CAPITAL, start=START), market=feed).run()


def wilder_atr(r: list[dict[str, object]], n: int = 14) -> list[float | None]:
    trs = []
    for i, b in enumerate(r):
        pc = r[i - 1]["close"] if i else b["close"]
        trs.append(max(b["high"] - b["low"], abs(b["high"] - pc), abs(b["low"] - pc)))
    out: list[float | None] = [None] * len(r)
    avg = sum(trs[:n]) / n
    out[n - 1] = avg
    for i in range(n, len(r)):
        avg = (avg * (n - 1) + trs[i]) / n
        out[i] = avg
    return out


def buy_price(open_: float) -> D:  # ask + slippage: 1 bp half-spread + 1 bp, up to the tick
    raw = D(f"{open_:.2f}") * (1 + D("0.0002"))
    return (raw / D("0.05")).quantize(D(1), rounding=ROUND_CEILING) * D("0.05")


def sell_price(open_: float) -> D:
    raw = D(f"{open_:.2f}") * (1 - D("0.0002"))
    return (raw / D("0.05")).quantize(D(1), rounding=ROUND_FLOOR) * D("0.05")


def charges_2021(side: str, qty: int, price: D) -> D:
    """Zerodha delivery charges in 2021 (NSE txn 0.00345%), written out by hand."""
    turnover = price * qty
    p = lambda x: x.quantize(D("0.01"), rounding=ROUND_HALF_UP)  # noqa: E731
    stt = (turnover * D("0.001")).quantize(D(1), rounding=ROUND_HALF_UP)
    txn = p(turnover * D("0.0000345"))
    sebi = p(turnover * 10 / D("10000000"))
    stamp = p(turnover * D("0.00015")) if side == "BUY" else D(0)
    gst = p((txn + sebi) * D("0.18"))
    dp = D("13.50") + p(D("13.50") * D("0.18")) if side == "SELL" else D(0)
    return stt + txn + sebi + stamp + gst + dp


def first_entry_signal(r: list[dict[str, object]]) -> int:
    """First bar on/after START whose close is above its 50-bar SMA and breaks the prior
    20-bar high, or dipped to the 20-EMA and closed above it, up on the day."""
    closes = [b["close"] for b in r]
    ema: list[float | None] = [None] * len(r)
    ema[19] = sum(closes[:20]) / 20
    for i in range(20, len(r)):
        ema[i] = ema[i - 1] + 2 / 21 * (closes[i] - ema[i - 1])
    for i in range(50, len(r)):
        if r[i]["day"] < START.date():
            continue
        trend = sum(closes[i - 49 : i + 1]) / 50
        prior_high = max(b["high"] for b in r[i - 20 : i])
        breakout = closes[i] > trend and closes[i] > prior_high
        pullback = (
            closes[i] > trend
            and r[i]["low"] <= ema[i]
            and closes[i] > ema[i]
            and closes[i] > r[i]["open"]
        )
        if breakout or pullback:
            return i
    raise AssertionError("no entry signal in the fixture")


@pytest.mark.parametrize("symbol", ["INFY", "RELIANCE"])
def test_entry_day_size_and_price(symbol: str) -> None:
    r = rows(symbol)
    i = first_entry_signal(r)
    atr = wilder_atr(r)[i]
    stop = r[i]["close"] - 2 * atr
    qty = min(
        math.floor(float(CAPITAL) * 0.01 / (r[i]["close"] - stop)),
        math.floor(float(CAPITAL) * 0.25 / r[i]["close"]),
    )
    trade = run(symbol).trades[0]
    assert trade.opened_at.astimezone(IST).date() == r[i + 1]["day"]
    assert trade.quantity == qty
    assert trade.entry_price == buy_price(r[i + 1]["open"])


def test_infy_partial_exits_at_1r_and_2r_then_the_rest() -> None:
    r = rows("INFY")
    i = first_entry_signal(r)
    stop = r[i]["close"] - 2 * wilder_atr(r)[i]
    trade = run("INFY").trades[0]
    entry = float(trade.entry_price)
    risk = entry - stop
    t1 = next(k for k in range(i + 1, len(r)) if r[k]["close"] >= entry + risk)
    t2 = next(k for k in range(t1, len(r)) if r[k]["close"] >= entry + 2 * risk)
    third = trade.quantity // 3
    legs = [(e.leg, e.quantity, e.at.astimezone(IST).date(), e.price) for e in trade.exits]
    assert legs[0] == ("T1", third, r[t1 + 1]["day"], sell_price(r[t1 + 1]["open"]))
    assert legs[1][:3] == ("T2", third, r[t2 + 1]["day"])
    assert legs[2][0] == "X" and sum(q for _, q, _, _ in legs) == trade.quantity
    assert trade.exits[2].reason == "trail"  # the rest left on the trailing stop
    # no close between entry and T1 fell to the stop
    assert all(r[k]["close"] > stop for k in range(i + 1, t1 + 1))


def test_reliance_stopped_out_at_the_next_open_after_a_close_under_the_stop() -> None:
    r = rows("RELIANCE")
    i = first_entry_signal(r)
    stop = r[i]["close"] - 2 * wilder_atr(r)[i]
    trade = run("RELIANCE").trades[0]
    k = next(k for k in range(i + 1, len(r)) if r[k]["close"] <= stop)
    (only,) = trade.exits
    assert (only.leg, only.reason, only.quantity) == ("X", "stop", trade.quantity)
    assert only.at.astimezone(IST).date() == r[k + 1]["day"]
    assert only.price == sell_price(r[k + 1]["open"])


def test_charges_and_net_pnl_match_a_hand_computation() -> None:
    result = run("INFY")
    trade = result.trades[0]
    buy = charges_2021("BUY", trade.quantity, trade.entry_price)
    sells = [charges_2021("SELL", e.quantity, e.price) for e in trade.exits]
    assert trade.charges == buy + sum(sells)
    gross = sum((e.price - trade.entry_price) * e.quantity for e in trade.exits)
    assert trade.net_pnl == gross - buy - sum(sells)
    # the account agrees: final equity = capital + every trade's net P&L (+ open positions)
    if not result.open_trades:
        assert result.report.final_equity_rupees == CAPITAL + sum(t.net_pnl for t in result.trades)


def test_kill_switch_stops_every_entry_with_the_reason() -> None:
    result = run("INFY", kill_switch=True, kill_switch_reason="manual")
    assert result.trades == [] and result.fills == []
    assert result.decisions and {(d.approved, d.reason) for d in result.decisions} == {
        (False, "kill_switch")
    }


def test_report_json_has_trades_curve_and_metrics(tmp_path: Path) -> None:
    import json

    from dalal_engine.report import write_report

    json_path, html_path = write_report(run("INFY"), tmp_path)
    data = json.loads(json_path.read_text())
    assert data["report"]["trades"] == len(data["trades"]) > 0
    assert len(data["equity_curve"]) > 50
    assert "<svg" in html_path.read_text()


def test_skipping_bars_where_nothing_can_happen_changes_nothing() -> None:
    """The loop visits only the bars where a symbol may act (its candidates, the bar after an
    order) and marks the rest in bulk: the result equals a run that asks the strategy on every
    bar, with two symbols whose bar times differ, one position slot for the two and a daily
    loss limit that bites."""
    from dataclasses import replace

    from dalal_engine.strategies.sma_cross import SmaCross

    class EveryBar(SmaCross):
        def candidates(self, ind):  # type: ignore[no-untyped-def]
            return None

        def exit_candidates(self, ind):  # type: ignore[no-untyped-def]
            return None

    cfg = validate_document(
        {
            "name": "skip",
            "strategy": "sma_cross",
            "universe": ["INFY", "RELIANCE"],
            "params": {"fast_bars": 3, "slow_bars": 10},
            "risk": {"max_open_positions": 1, "max_daily_loss_rupees": "2500"},
        }
    )[0]
    infy = history.load("INFY", "day", data_dir=FIXTURES)
    keep = [i for i in range(len(infy)) if i % 7 != 3]  # INFY misses some of RELIANCE's days
    data = {
        "INFY": replace(
            infy,
            start=tuple(infy.start[i] for i in keep),
            open=infy.open[keep],
            high=infy.high[keep],
            low=infy.low[keep],
            close=infy.close[keep],
            volume=infy.volume[keep],
            _seconds=None,
        ),
        "RELIANCE": history.load("RELIANCE", "day", data_dir=FIXTURES),
    }
    fast = Backtester(cfg, data, BacktestSettings(CAPITAL)).run()
    every = EveryBar(cfg.build().params)
    slow = Backtester(cfg, data, BacktestSettings(CAPITAL), strategy=every).run()
    assert fast.to_json() == slow.to_json()
    assert fast.equity == slow.equity
    assert len(fast.equity) == len(set(data["INFY"].start) | set(data["RELIANCE"].start))
    reasons = {d.reason for d in fast.decisions}
    assert len(fast.trades) > 5 and {"ok", "max_open_positions", "daily_loss"} <= reasons


def test_a_backtest_past_the_holiday_list_runs_and_says_why_entries_wait() -> None:
    from dalal_shared.calendar import NseCalendar, nse_calendar

    full = nse_calendar()
    until_feb = NseCalendar(
        {d: full._listed[d] for d in full._listed if d.year <= 2021},
        date(2015, 1, 1),
        date(2021, 2, 28),
    )
    cfg = validate_document(
        {"name": "cov", "strategy": "sma_cross", "universe": ["INFY"],
         "params": {"fast_bars": 3, "slow_bars": 10}}
    )[0]  # fmt: skip
    data = {"INFY": history.load("INFY", "day", data_dir=FIXTURES)}
    result = Backtester(cfg, data, BacktestSettings(CAPITAL), calendar=until_feb).run()
    march = [d for d in result.decisions if d.at.date() >= date(2021, 3, 1)]
    entries = [d for d in march if d.action == "ENTER"]
    assert entries and {d.reason for d in entries} == {"calendar_not_covered"}
    assert len(result.equity) == len(data["INFY"])


def test_gzipped_csv_files_are_read_like_plain_ones(tmp_path: Path) -> None:
    """kitesim ships most daily files as `.csv.gz`: `--data-dir` reads them as they are."""
    plain = Path(__file__).parent / "fixtures" / "INFY.csv"
    (tmp_path / "INFY.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    got = history.load("INFY", "day", data_dir=tmp_path)
    want = history.load("INFY", "day", data_dir=plain.parent)
    assert got.start == want.start and list(got.close) == list(want.close)


def test_a_csv_is_sorted_a_repeated_time_keeps_its_last_row_and_a_bad_header_is_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "X.csv").write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-03,12,13,11,12.5,300\n"
        "2024-01-02,10,11,9,10.5,100\n"
        "2024-01-03,20,21,19,20.5,\n"  # the same day again (no volume): this row counts
    )
    s = history.load("X", "day", data_dir=tmp_path)
    assert [t.isoformat() for t in s.start] == [
        "2024-01-01T18:30:00+00:00",  # 00:00 IST, the Kite daily candle's stamp
        "2024-01-02T18:30:00+00:00",
    ]
    assert list(s.close) == [10.5, 20.5] and list(s.volume) == [100, 0]
    (tmp_path / "Y.csv").write_text("day,price\n2024-01-02,10\n")
    with pytest.raises(history.NoBarsError, match="no column date, open, high, low, close"):
        history.load("Y", "day", data_dir=tmp_path)


def test_csv_forms_read_alike_and_intraday_offsets_give_the_same_instant(tmp_path: Path) -> None:
    """A plain file is split at once; CR LF line ends, blank lines and other column orders go
    line by line: the bars are the same. Intraday times with any offset (or Z) are the same
    instant; a row with a missing field is refused, not read askew."""
    rows = ["2024-01-02,10,11,9,10.5,100", "2024-01-03,12,13,11,12.5,300"]
    (tmp_path / "A.csv").write_text("date,open,high,low,close,volume\n" + "\n".join(rows))
    (tmp_path / "B.csv").write_bytes(
        ("Date,Open,High,Low,Close,Volume\r\n\r\n" + "\r\n".join(rows) + "\r\n").encode()
    )
    (tmp_path / "C.csv").write_text(
        "close,volume,date,open,high,low\n10.5,100,2024-01-02,10,11,9\n12.5,300,2024-01-03,12,13,11\n"
    )
    a, b, c = (history.load(s, "day", data_dir=tmp_path) for s in "ABC")
    for other in (b, c):
        assert other.start == a.start and list(other.seconds) == list(a.seconds)
        assert [list(getattr(other, k)) for k in ("open", "high", "low", "close", "volume")] == [
            list(getattr(a, k)) for k in ("open", "high", "low", "close", "volume")
        ]
    (tmp_path / "I.csv").write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-02T09:15:00+05:30,1,1,1,1,1\n"
        "2024-01-02T04:00:00+00:00,2,2,2,2,2\n"
        "2024-01-01T23:15:00-05:00,3,3,3,3,3\n"
    )
    (tmp_path / "J.csv").write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-02T03:45:00Z,1,1,1,1,1\n"
        "2024-01-02T04:00:00Z,2,2,2,2,2\n"
        "2024-01-02T04:15:00Z,3,3,3,3,3\n"
    )
    i, j = (history.load(s, "15minute", data_dir=tmp_path) for s in "IJ")
    assert (
        [t.isoformat() for t in i.start]
        == [t.isoformat() for t in j.start]
        == [
            "2024-01-02T03:45:00+00:00",
            "2024-01-02T04:00:00+00:00",
            "2024-01-02T04:15:00+00:00",
        ]
    )
    assert list(i.close) == list(j.close) == [1.0, 2.0, 3.0]
    (tmp_path / "R.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,10,11,9,10.5\n2024-01-03,12,13,11,12.5,300,7\n"
    )
    with pytest.raises(ValueError, match="zip"):  # rows of different lengths
        history.load("R", "day", data_dir=tmp_path)
