"""The ledger as a user reads it: positions, FIFO P&L, charges, cash."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from portfolio_recorded import DAY1, DAY2, SESSION, build, digest, fill, m

from dalal_portfolio.ledger import Book, CashMovement, ConflictingFill, InsufficientFunds
from dalal_shared.charges import dp_charge, order_charges


def test_duplicates_and_out_of_order_delivery_give_the_clean_ledger() -> None:
    clean = digest(build(SESSION))
    rng = random.Random(7)
    for _ in range(20):
        delivered = SESSION + rng.sample(SESSION, 5)  # redeliveries
        rng.shuffle(delivered)
        assert digest(build(delivered)) == clean


def test_fifo_realised_pnl_and_average_price() -> None:
    book = build(
        [
            fill("a", "1", "SBIN", "BUY", 10, "100", m(0)),
            fill("b", "2", "SBIN", "BUY", 10, "110", m(1)),
            fill("c", "3", "SBIN", "SELL", 15, "120", m(2)),
        ]
    )
    (pos,) = book.positions()
    assert pos.quantity == 5
    assert pos.average_price == D("110")  # the first lot went first
    assert pos.realised_gross == D("250")  # 10 x 20 + 5 x 10


def test_partial_exits_are_listed_with_their_reasons() -> None:
    book = build(SESSION[:5])
    (infy,) = book.positions_for("INFY")
    assert infy.quantity == 10
    assert [(e.quantity, e.reason) for e in infy.exits] == [(5, "target_1"), (5, "target_2")]
    book = build(SESSION)
    (infy,) = book.positions_for("INFY")
    assert not infy.is_open and infy.exits == []
    (trip,) = [t for t in book.round_trips() if t.symbol == "INFY"]
    assert [e.reason for e in trip.exits] == ["target_1", "target_2", "c5", "stop"]
    assert trip.quantity == 20 and trip.direction == "LONG"


def test_delivery_round_trip_net_of_zerodha_charges() -> None:
    day = date(2025, 3, 3)
    book = build(
        [
            fill("b1", "1", "ITC", "BUY", 10, "2500", DAY1),
            fill("s1", "2", "ITC", "SELL", 10, "2600", DAY2),
        ]
    )
    buy = order_charges("BUY", "CNC", 10, D("2500"), day).total
    sell = order_charges("SELL", "CNC", 10, D("2600"), date(2025, 3, 4)).total
    dp = dp_charge(date(2025, 3, 4)).total
    assert buy == D("29.66")
    (trip,) = book.round_trips()
    assert trip.realised_gross == D("1000")
    assert trip.charges == buy + sell + dp
    assert trip.realised_net == D("1000") - buy - sell - dp
    assert book.cash() == D("1000000") + D("1000") - buy - sell - dp


def test_an_order_filled_in_several_trades_pays_brokerage_once() -> None:
    book = build(
        [
            fill("x1", "9", "HDFCBANK", "BUY", 50, "1000", m(0), product="MIS"),
            fill("x2", "9", "HDFCBANK", "BUY", 50, "1000", m(1), product="MIS"),
        ]
    )
    (pos,) = book.positions()
    whole_order = order_charges("BUY", "MIS", 100, D("1000"), date(2025, 3, 3))
    assert whole_order.brokerage == D("20.00")  # capped once per executed order
    assert pos.charges == whole_order.total


def test_intraday_short_is_covered_with_profit() -> None:
    book = build(SESSION)
    (tcs,) = book.positions_for("TCS")
    assert tcs.quantity == 0
    (trip,) = [t for t in book.round_trips() if t.symbol == "TCS"]
    assert trip.direction == "SHORT"
    assert trip.realised_gross == D("404")  # 12 x 20 + 8 x 20.5
    assert trip.realised_net == D("404") - tcs.charges


def test_a_fill_that_flips_the_position_closes_one_trip_and_opens_another() -> None:
    book = build(
        [
            fill("f1", "1", "ACC", "BUY", 5, "100", m(0), product="MIS"),
            fill("f2", "2", "ACC", "SELL", 8, "110", m(5), product="MIS"),
        ]
    )
    (pos,) = book.positions()
    assert pos.quantity == -3 and pos.average_price == D("110")
    (trip,) = book.round_trips()
    assert trip.realised_gross == D("50")


def test_same_trade_id_with_other_details_is_refused() -> None:
    book = build(SESSION[:1])
    other = fill("T001", "1", "INFY", "BUY", 7, "1500", m(0))
    with pytest.raises(ConflictingFill):
        book.apply(other)


def test_mark_to_market_equity_and_exposure() -> None:
    book = build(SESSION)
    v0 = book.valuation({})
    v = book.valuation({"RELIANCE": D("3000.05")})
    assert v.unrealised == D("300")  # 3 x 100
    assert v.equity - v0.equity == D("300")
    assert v.gross_exposure == D("9000.15")
    assert v.open_positions == 1
    assert v.equity == v.cash + v.market_value


def test_deposits_withdrawals_and_available_capital() -> None:
    book = Book(D("100000"))
    assert book.move_cash(CashMovement("dep-1", D("5000"), DAY1))
    assert not book.move_cash(CashMovement("dep-1", D("5000"), DAY1))  # same key: once
    book.blocked_funds = D("20000")
    assert book.available_capital() == D("85000")
    with pytest.raises(InsufficientFunds):
        book.move_cash(CashMovement("wd-1", D("-90000"), DAY2))
    book.move_cash(CashMovement("wd-2", D("-85000"), DAY2))
    assert book.available_capital() == D("0")


def test_fills_in_time_order_step_the_position_like_a_full_replay() -> None:
    """The in-order fast path (one replay step per fill) and a replay from scratch agree on
    every field of every position: lots, exits, round trips, per-fill charges (orders filled
    in parts, the day's DP charge), effects."""
    from dalal_portfolio.ledger import replay

    rng = random.Random(7)
    fills = []
    held = {"INFY": 0, "TCS": 0}
    for i in range(400):
        symbol = rng.choice(sorted(held))
        at = DAY1 + timedelta(minutes=7 * i) + timedelta(days=i // 40)
        order = str(i // 3)  # runs of three fills share an order: partial fills
        if held[symbol] > 0 and rng.random() < 0.45:
            qty, side = rng.randint(1, held[symbol]), "SELL"
        else:
            qty, side = rng.randint(1, 50), "BUY"
        held[symbol] += qty if side == "BUY" else -qty
        price = f"{rng.randint(9000, 11000) / 10:.2f}"
        fills.append(fill(f"T{i:04d}", order + symbol, symbol, side, qty, price, at))
    stepped = Book(D("10000000"))
    for f in fills:
        stepped.apply(f)
    shuffled = Book(D("10000000"))
    late = fills[:]
    rng.shuffle(late)
    for f in late:  # mostly late fills: replays from scratch
        shuffled.apply(f)
    for position in stepped.positions():
        same_key = [f for f in fills if f.key == position.key]
        assert position == replay(position.key, same_key)
        assert position == shuffled.position(position.key)
    assert stepped.cash() == shuffled.cash()
