"""The tick -> bar builder equals a pandas resample of the same ticks (hypothesis): for 1, 5
and 15-minute bars and the day, the same bars with the same open, high, low, close and volume
(volume: the increase of Kite's cumulative day volume since the symbol's previous tick)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_data.bars import BarBuilder
from dalal_shared.timeutil import IST

SESSION_SECONDS = (6 * 60 + 15) * 60  # 09:15 .. 15:30
DAYS = [datetime(2024, 3, 4, 9, 15, tzinfo=IST), datetime(2024, 3, 5, 9, 15, tzinfo=IST)]
RULES = {"minute": "1min", "5minute": "5min", "15minute": "15min", "day": "1D"}


@st.composite
def tick_days(draw: st.DrawFn) -> list[tuple[datetime, int, int]]:
    """Ticks of one symbol over one or two sessions: (time, price in paise, cumulative volume)."""
    ticks = []
    for day_open in DAYS[: draw(st.integers(1, 2))]:
        offsets = sorted(
            draw(st.lists(st.integers(0, SESSION_SECONDS - 1), min_size=1, max_size=60))
        )
        price = draw(st.integers(2_000, 40_000)) * 5  # Rs 100 .. 2,000 on the 0.05 grid
        cum = 0
        for offset in offsets:
            price = max(5, price + 5 * draw(st.integers(-3, 3)))
            cum += draw(st.integers(0, 500))
            ticks.append((day_open + timedelta(seconds=offset), price, cum))
    return ticks


@settings(max_examples=80, deadline=None)
@given(ticks=tick_days())
def test_bar_builder_equals_a_pandas_resample(ticks: list[tuple[datetime, int, int]]) -> None:
    builder = BarBuilder()
    built = []
    for at, price, cum in ticks:
        built += builder.on_tick("X", Decimal(price) / 100, cum, at)
    built += builder.close_due(DAYS[-1] + timedelta(days=1))

    frame = pd.DataFrame(
        {
            "price": [p for _, p, _ in ticks],
            "cum": [c for _, _, c in ticks],
            "day": [t.date() for t, _, _ in ticks],
        },
        index=pd.DatetimeIndex([t for t, _, _ in ticks]),
    )
    # traded since the symbol's previous tick of the same day (the first tick: its cumulative)
    frame["traded"] = frame.groupby("day")["cum"].diff().fillna(frame["cum"]).astype(int)
    for interval, rule in RULES.items():
        mine = sorted(
            (
                b.start,
                int(b.open * 100),
                int(b.high * 100),
                int(b.low * 100),
                int(b.close * 100),
                b.volume,
            )
            for b in built
            if b.interval == interval
        )
        resampled = frame.resample(rule).agg(
            {"price": ["first", "max", "min", "last", "count"], "traded": "sum"}
        )
        resampled = resampled[resampled[("price", "count")] > 0]
        theirs = [
            (
                start.to_pydatetime()
                + (timedelta(hours=9, minutes=15) if rule == "1D" else timedelta()),
                int(row[("price", "first")]),
                int(row[("price", "max")]),
                int(row[("price", "min")]),
                int(row[("price", "last")]),
                int(row[("traded", "sum")]),
            )
            for start, row in resampled.iterrows()
        ]
        assert mine == theirs, interval
