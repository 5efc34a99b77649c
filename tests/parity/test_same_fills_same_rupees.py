"""The same fills give the same rupees everywhere: the backtester's fills of a run with many
same-day CNC round trips, booked by the portfolio ledger (as kitesim's trades would reach it),
cost exactly what the backtester charged, fill by fill and in total, and leave the same
realised P&L, round trip by round trip: both book fills with the one accounting kernel,
`dalal_shared.accounting` (FIFO lots, Zerodha's charges per scrip and day)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from dalal_engine import history
from dalal_engine.backtest import Backtester
from dalal_engine.strategyconfig import validate_document
from dalal_portfolio.ledger import Book, Fill

FIXTURES = Path(__file__).parents[2] / "services" / "engine" / "tests" / "fixtures"


def test_ledger_charges_equal_the_backtesters_for_the_same_fills():
    cfg = validate_document(
        {
            "name": "sameday",
            "strategy": "sma_cross",
            "interval": "15minute",
            "universe": ["AXISBANK"],
            "params": {"fast_bars": 3, "slow_bars": 8, "fixed_quantity": 100},
        }
    )[0]
    data = {"AXISBANK": history.load("AXISBANK", "15minute", data_dir=FIXTURES)}
    result = Backtester(cfg, data).run()
    assert len(result.trades) > 20
    book = Book(D("1000000"))
    fills = [
        Fill(
            trade_id=f"T{k:05d}",
            client_order_id=f.client_order_id,
            broker_order_id=f.client_order_id,
            exchange="NSE",
            symbol=f.symbol,
            side=f.side,  # type: ignore[arg-type]
            product="CNC",
            quantity=f.quantity,
            price=f.price,
            filled_at=f.at,
        )
        for k, f in enumerate(result.fills)
    ]
    for fill in reversed(fills):  # late delivery: the ledger orders them itself
        book.apply(fill)
    (position,) = book.positions()
    assert position.charges_breakdown == result.charges
    assert book.charges() == result.charges.total
    for fill, record in zip(fills, result.fills, strict=True):
        assert position.fill_charges[fill.trade_id] == record.charges
    # one accounting kernel (dalal_shared.accounting): the same round trips, to the last digit
    trips = book.round_trips()
    assert len(trips) == len(result.trades)
    for trip, trade in zip(trips, result.trades, strict=True):
        assert (trip.opened_at, trip.closed_at) == (trade.opened_at, trade.closed_at)
        assert (trip.quantity, trip.entry_price) == (trade.quantity, trade.entry_price)
        assert trip.realised_gross == trade.gross_pnl
        assert trip.charges == trade.charges
        assert trip.realised_net == trade.net_pnl
