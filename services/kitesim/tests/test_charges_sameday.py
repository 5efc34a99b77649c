"""kitesim debits Zerodha's charges by the day-netting rule of `dalal_shared.charges`: a CNC buy
sold the same day is intraday (brokerage, 0.025% STT on the sell, 0.003% stamp, no DP), seen
through the official client's funds (`margins`) and trades."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dalal_shared.charges import TradeFill, day_charges, order_charges
from dalal_shared.timeutil import IST


def place(kite, side: str, quantity: int = 10) -> str:
    return kite.place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="RELIANCE",
        transaction_type=side,
        quantity=quantity,
        product="CNC",
        order_type="MARKET",
        market_protection=-1,
    )


def charges_debited(kite) -> tuple[Decimal, list[dict]]:
    """Debits less the net cash of the day's CNC trades: what the account paid in charges."""
    trades = kite.trades()
    flow = sum(
        Decimal(str(t["average_price"]))
        * t["quantity"]
        * (1 if t["transaction_type"] == "BUY" else -1)
        for t in trades
    )
    debits = Decimal(str(kite.margins("equity")["utilised"]["debits"]))
    return debits - flow, trades


def test_a_cnc_round_trip_on_one_day_is_charged_as_intraday(kitesim, kite):
    kitesim.advance(seconds=60)
    place(kite, "BUY")
    kitesim.advance(seconds=60)
    place(kite, "SELL")
    kitesim.advance(seconds=60)
    paid, trades = charges_debited(kite)
    assert [t["transaction_type"] for t in trades] == ["BUY", "SELL"]
    day = datetime.fromisoformat(str(trades[0]["fill_timestamp"])).replace(tzinfo=IST).date()
    fills = [
        TradeFill(
            t["order_id"], t["transaction_type"], t["quantity"], Decimal(str(t["average_price"]))
        )
        for t in trades
    ]
    intraday = day_charges(fills, "MIS", day)  # every part at intraday rates
    assert intraday.dp == 0
    assert paid == intraday.total.quantize(Decimal("0.01"))
    delivery = sum(
        (order_charges(f.side, "CNC", f.quantity, f.price, day).total for f in fills), Decimal(0)
    )
    assert paid < delivery  # what it charged before: delivery STT both sides
