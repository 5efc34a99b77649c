"""The accounting kernel (`dalal_shared.accounting`): what a fill does to a position, the one
rule the backtester, the engine and the portfolio ledger book fills with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_shared.accounting import Fill, PositionReplay, replay, replay_state

KEY = ("NSE", "INFY", "CNC")
T0 = datetime(2024, 1, 2, 4, 0, tzinfo=UTC)  # 09:30 IST


def fill(n: int, side: str, qty: int, price: str, minutes: int, *, charged: bool = True) -> Fill:
    return Fill(
        trade_id=f"T{n:04d}",
        client_order_id=f"C{n:04d}",
        broker_order_id=f"B{n:04d}",
        exchange="NSE",
        symbol="INFY",
        side=side,  # type: ignore[arg-type]
        product="CNC",
        quantity=qty,
        price=D(price),
        filled_at=T0 + timedelta(minutes=minutes),
        charged=charged,
    )


def test_fifo_lots_after_a_scale_in_and_a_partial_exit() -> None:
    pos = replay(
        KEY,
        [
            fill(1, "BUY", 10, "100", 0),
            fill(2, "BUY", 10, "110", 1),
            fill(3, "SELL", 15, "120", 2),
        ],
    )
    # the first lot (10 @ 100) closes whole, then 5 of the second (@ 110)
    assert pos.quantity == 5
    assert pos.average_price == D("110.0000")
    assert pos.realised_gross == D("250.0000")  # 10 x 20 + 5 x 10
    assert [(lot.quantity, lot.price) for lot in pos.lots] == [(5, D("110"))]


def test_same_day_round_trip_is_charged_intraday_by_the_kernel() -> None:
    # Zerodha: a CNC buy and sell of the same scrip on the same day is intraday (ADR 0006)
    state = replay_state(KEY, [fill(1, "BUY", 10, "1500", 0), fill(2, "SELL", 10, "1510", 30)])
    (trip,) = state.pos.round_trips
    assert trip.realised_gross == D("100.0000")
    assert trip.charges == state.pos.charges  # every charge of the cycle
    assert state.pos.charges_breakdown.dp == 0  # nothing delivered out
    assert state.pos.charges_breakdown.stt < D("10")  # 0.025% of the sell, not 0.1% both ways


def test_step_returns_what_the_fill_did() -> None:
    state = PositionReplay(KEY)
    kinds = [
        state.step(f).kind
        for f in [
            fill(1, "BUY", 10, "100", 0),
            fill(2, "BUY", 5, "101", 1),
            fill(3, "SELL", 5, "102", 2),
            fill(4, "SELL", 10, "103", 3),
        ]
    ]
    assert kinds == ["opened", "increased", "reduced", "closed"]


trades = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(min_value=1, max_value=50),
        st.integers(min_value=2000, max_value=2400),  # paise x 5: the 0.05 grid
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(trades, st.integers(min_value=0, max_value=24))
def test_a_held_position_goes_on_like_the_whole_history(
    script: list[tuple[str, int, int]], cut: int
) -> None:
    """What the engine does after a restart (`PositionReplay.holding` from its saved lots) gives
    the quantity, average price and lots a replay of every fill gives."""
    fills = [
        fill(n, side, qty, str(D(p) * D("0.05")), n, charged=False)
        for n, (side, qty, p) in enumerate(script)
    ]
    cut = min(cut, len(fills))
    whole = replay(KEY, fills)
    before = replay(KEY, fills[:cut])
    resumed = PositionReplay.holding(KEY, before.lots, before.opened_at)
    for f in fills[cut:]:
        resumed.step(f)
    pos = resumed.pos
    assert pos.quantity == whole.quantity
    assert pos.average_price == whole.average_price
    assert [(lot.quantity, lot.price, lot.trade_id) for lot in pos.lots] == [
        (lot.quantity, lot.price, lot.trade_id) for lot in whole.lots
    ]
    assert pos.opened_at == whole.opened_at
    # the realised P&L of what was closed after the cut equals the whole history's
    assert pos.realised_gross == whole.realised_gross - before.realised_gross
