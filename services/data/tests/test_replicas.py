"""Two replicas of the data service's candles API on one Redis and one cache volume (as the
prod overlay's HPA runs them): asked for the same cold history at the same moment, both answer
exactly Kite's candles, the cache is filled once (one replica fetches, the other reads what it
wrote), and what one replica cached the other serves without calling Kite."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from .test_candles import candles, kite_rows, token_of

if TYPE_CHECKING:
    from conftest import DataApp, Kitesim

pytestmark = pytest.mark.usefixtures("kitesim")


async def test_two_replicas_share_one_cache_and_answer_alike(make_data, kitesim: Kitesim) -> None:
    a: DataApp = make_data()
    b: DataApp = make_data()
    params = {"interval": "day", "from": "2021-01-01", "to": "2024-12-31"}
    first, second = await asyncio.gather(candles(a, "INFY", **params), candles(b, "INFY", **params))
    assert first.status_code == second.status_code == 200
    expected = kite_rows(
        kitesim, token_of(kitesim, "INFY"), "day", "2021-01-01 00:00:00", "2024-12-31 23:59:59"
    )
    assert [r[:6] for r in first.json()["candles"]] == expected
    assert first.json()["candles"] == second.json()["candles"]
    # one replica fetched the four years from Kite (one request); the other waited on the
    # shared cache lock and read what was written, or fetched nothing new
    assert a.historical_calls + b.historical_calls == 1

    # what replica a caches, replica b serves from the shared volume
    wider = {"interval": "day", "from": "2020-10-01", "to": "2025-09-30"}
    via_a = await candles(a, "SBIN", **wider)
    calls = a.historical_calls + b.historical_calls
    via_b = await candles(b, "SBIN", **wider)
    assert via_b.json()["cache"] == "hit"
    assert a.historical_calls + b.historical_calls == calls
    assert via_b.json()["candles"] == via_a.json()["candles"]
