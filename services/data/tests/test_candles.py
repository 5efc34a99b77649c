"""The candles API over kitesim: the fewest historical requests cold, none warm, only the gap
on overlap, 429s absorbed within the limiter's rate, clear 4xx codes for bad input."""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dalal_shared.calendar import nse_calendar

if TYPE_CHECKING:
    from conftest import DataApp, Kitesim

pytestmark = pytest.mark.usefixtures("kitesim")


def kite_rows(kitesim: Kitesim, token: int, interval: str, start: str, end: str) -> list[list]:
    kite = kitesim.client()
    rows = kite.historical_data(
        token, datetime.fromisoformat(start), datetime.fromisoformat(end), interval
    )
    return [
        [r["date"].isoformat(), r["open"], r["high"], r["low"], r["close"], r["volume"]]
        for r in rows
    ]


def token_of(kitesim: Kitesim, symbol: str) -> int:
    kite = kitesim.client()
    return next(
        i["instrument_token"] for i in kite.instruments("NSE") if i["tradingsymbol"] == symbol
    )


async def candles(data: DataApp, symbol: str, **params: str):
    return await data.http.get(f"/candles/NSE/{symbol}", params=params)


async def test_cold_five_years_daily_is_one_request_and_warm_is_none(
    data: DataApp, kitesim: Kitesim
) -> None:
    params = {"interval": "day", "from": "2020-10-01", "to": "2025-09-30"}
    cold = await candles(data, "RELIANCE", **params)
    assert cold.status_code == 200, cold.text
    assert data.historical_calls == 1
    body = cold.json()
    assert body["cache"] == "miss"
    expected = kite_rows(
        kitesim, token_of(kitesim, "RELIANCE"), "day", "2020-10-01 00:00:00", "2025-09-30 23:59:59"
    )
    assert len(body["candles"]) == len(expected) > 1200
    assert [row[:6] for row in body["candles"]] == expected

    warm = await candles(data, "RELIANCE", **params)
    assert data.historical_calls == 1
    assert warm.json()["cache"] == "hit"
    assert warm.json()["candles"] == body["candles"]


async def test_a_request_overlapping_the_cache_fetches_only_the_gap(
    data: DataApp, kitesim: Kitesim
) -> None:
    first = await candles(data, "TCS", interval="day", **{"from": "2022-01-01", "to": "2022-12-31"})
    assert first.status_code == 200
    assert data.historical_calls == 1
    wider = await candles(data, "TCS", interval="day", **{"from": "2021-06-01", "to": "2023-06-30"})
    assert wider.json()["cache"] == "partial"
    assert data.historical_calls == 3  # before and after the cached year, nothing else
    expected = kite_rows(
        kitesim, token_of(kitesim, "TCS"), "day", "2021-06-01 00:00:00", "2023-06-30 23:59:59"
    )
    assert [row[:6] for row in wider.json()["candles"]] == expected


async def test_intraday_history_is_cut_at_the_span_limit(data: DataApp, kitesim: Kitesim) -> None:
    # 15-minute bars: 200 days per request; 2024 needs two requests
    resp = await candles(
        data, "INFY", interval="15minute", **{"from": "2024-01-01", "to": "2024-12-31"}
    )
    assert resp.status_code == 200, resp.text
    assert data.historical_calls == 2
    first_day = [r for r in resp.json()["candles"] if r[0].startswith("2024-01-02")]
    assert first_day[0][0] == "2024-01-02T09:15:00+05:30" and len(first_day) == 25


async def test_injected_429s_are_absorbed_within_the_limiters_rate(
    data: DataApp, kitesim: Kitesim
) -> None:
    kitesim.control("/faults", {"kind": "status", "status": 429, "count": 3, "route": "historical"})
    try:
        # minute bars over four months: 60-day chunks, so at least two requests plus the retries
        resp = await candles(
            data, "NIFTY 50", interval="minute", **{"from": "2024-01-01", "to": "2024-04-30"}
        )
    finally:
        kitesim.control("/faults", method="DELETE")
    assert resp.status_code == 200, resp.text
    assert any(r[0].startswith("2024-01-31T15:29") for r in resp.json()["candles"])
    times = data.call_times
    assert len(times) == 3 + 3  # three 60-day chunks, three of them answered 429 once
    # the shared bucket (3 tokens, 3 per second): never more than 3 + 3t calls in any t seconds
    for i, t0 in enumerate(times):
        for t1 in times[i:]:
            assert times.index(t1) - i + 1 <= 3 + 3 * (t1 - t0) + 1e-6


@pytest.mark.parametrize(
    ("symbol", "params", "status", "code"),
    [
        (
            "NOSUCHSYM",
            {"interval": "day", "from": "2024-01-01", "to": "2024-02-01"},
            404,
            "unknown_symbol",
        ),
        (
            "RELIANCE",
            {"interval": "2minute", "from": "2024-01-01", "to": "2024-02-01"},
            400,
            "bad_interval",
        ),
        (
            "RELIANCE",
            {"interval": "day", "from": "2024-03-01", "to": "2024-02-01"},
            400,
            "bad_range",
        ),
        (
            "RELIANCE",
            {"interval": "day", "from": "2024-03-01", "to": "2099-01-01"},
            400,
            "range_in_future",
        ),
        ("RELIANCE", {"interval": "day", "from": "yesterday"}, 400, "bad_range"),
        ("RELIANCE", {"interval": "day"}, 422, "validation_error"),
    ],
)
async def test_bad_input_answers_4xx_with_a_clear_code(
    data: DataApp, symbol: str, params: dict[str, str], status: int, code: str
) -> None:
    resp = await candles(data, symbol, **params)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == code
    assert data.historical_calls == 0


async def test_csv_and_arrow_on_request_and_coverage_lists_missing_sessions(
    data: DataApp,
) -> None:
    params = {"interval": "day", "from": "2024-01-01", "to": "2024-01-31"}
    as_json = (await candles(data, "SBIN", **params)).json()["candles"]
    csv = await candles(data, "SBIN", format="csv", **params)
    assert csv.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(csv.content))
    sessions = nse_calendar().trading_days(date(2024, 1, 1), date(2024, 1, 31))
    assert table.num_rows == len(as_json) == len(sessions)  # Republic Day closed
    arrow = await data.http.get(
        "/candles/NSE/SBIN",
        params=params,
        headers={"accept": "application/vnd.apache.arrow.stream"},
    )
    got = pa.ipc.open_stream(arrow.content).read_all()
    assert got.column("close").to_pylist() == [r[4] for r in as_json]
    assert data.historical_calls == 1

    cov = await data.http.get(
        "/coverage", params={"symbol": "SBIN", "from": "2023-12-26", "to": "2024-02-02"}
    )
    series = cov.json()["series"]
    assert len(series) == 1
    assert series[0]["missing_sessions"] == [
        "2023-12-26",
        "2023-12-27",
        "2023-12-28",
        "2023-12-29",
        "2024-02-01",
        "2024-02-02",
    ]


async def test_a_refused_token_is_reported_to_the_broker_on_the_bus(make_data, redis_url: str):
    """Kite answers TokenException: the request fails with a clear code and the data service
    publishes KiteSessionRefused on system.events (the broker checks its session at once)."""
    import redis.asyncio as aioredis

    from dalal_shared.bus import decode_envelope
    from dalal_shared.messages import KiteSessionRefused
    from dalal_shared.streams import SYSTEM_EVENTS

    data = make_data(kite_access_token="a-token-kite-never-issued")
    params = {"interval": "day", "from": "2023-01-02", "to": "2023-01-31"}
    resp = await candles(data, "RELIANCE", **params)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "no_session"
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(SYSTEM_EVENTS)
    finally:
        await client.aclose()
    reports = [
        m
        for m in (decode_envelope(f).message for _, f in entries)
        if isinstance(m, KiteSessionRefused)
    ]
    assert reports and reports[-1].service == "data"
    assert "TokenException" in reports[-1].reason
    assert "a-token-kite-never-issued" not in reports[-1].reason  # never the token itself
