"""The whole-paise charges (`ScripDay.add_trade`, the accounting kernel's hot path) against the
Decimal formulas they replaced, kept here as the reference: over many random days of fills
(both sides, CNC and MIS, intraday and delivery, partial same-day netting, prices on the paisa
and on the backtester's 4-decimal grid, half-paisa and half-rupee rounding edges, prices off
the grid and days too large for whole numbers), every per-fill breakdown and every day total
is the same Decimal, to the exponent (`str` equal), and the kernel books the same charges."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from dalal_shared import accounting
from dalal_shared.charges import (
    CRORE,
    PCT,
    RATE_HISTORY,
    ChargesBreakdown,
    DayCharges,
    EquityRates,
    Product,
    ScripDay,
    Side,
    TradeFill,
    _paise,
    _rupees,
    _share,
    dp_charge,
    rates_on,
)

DAYS = [date(2020, 11, 2), date(2021, 6, 1), date(2023, 5, 2), date(2024, 10, 3), date(2025, 3, 3)]


class ReferenceScripDay:
    """`ScripDay` as it was: Decimal throughout (the formulas the paise must reproduce)."""

    def __init__(self, product: str, trade_date: date, *, history: Any = RATE_HISTORY, dp=True):
        self.product = Product(product)
        self.trade_date = trade_date
        self.rates = rates_on(trade_date, history)
        self.history = history
        self.dp = dp
        self.total = ChargesBreakdown()
        self._mis = self.product is Product.MIS
        self._bought, self._sold = 0, 0
        self._buy_value, self._sell_value = D(0), D(0)
        self._orders: dict[tuple[str, bool], list[Any]] = {}
        self._dp_charge: ChargesBreakdown | None = None

    def add(self, fill: TradeFill) -> ChargesBreakdown:
        buy = fill.side is Side.BUY
        row = self._orders.get((fill.order_id, buy))
        if row is None:
            row = self._orders[(fill.order_id, buy)] = [0, D(0), 0, D(0)]
        turnover = fill.price * fill.quantity
        row[0] += fill.quantity
        row[1] += turnover
        row[2] = -1
        if buy:
            self._bought += fill.quantity
            self._buy_value += turnover
        else:
            self._sold += fill.quantity
            self._sell_value += turnover
        after = self._charges()
        delta = after - self.total
        self.total = after
        return delta

    def _brokerage(self) -> D:
        r, mis = self.rates, self._mis
        matched = min(self._bought, self._sold)
        left_buy = left_sell = matched
        total = D(0)
        for (_order, buy), row in self._orders.items():
            quantity, value, before = row[0], row[1], row[2]
            if mis:
                intraday = quantity
            elif buy:
                intraday = min(quantity, left_buy)
                left_buy -= intraday
            else:
                intraday = min(quantity, left_sell)
                left_sell -= intraday
            if intraday != before:
                row[2] = intraday
                pct = _paise(_share(value, intraday, quantity) * r.brokerage_intraday_pct * PCT)
                row[3] = min(pct, r.brokerage_intraday_cap_rupees) if intraday else D(0)
            total += row[3]
        return _paise(total)

    def _charges(self) -> ChargesBreakdown:
        r = self.rates
        bq, sq = self._bought, self._sold
        bv, sv = self._buy_value, self._sell_value
        brokerage = self._brokerage()
        if self._mis:
            stt_value = sv * r.stt_intraday_sell_pct * PCT
            stamp_value = bv * r.stamp_intraday_buy_pct * PCT
            delivered_out = False
        else:
            matched = min(bq, sq)
            intraday_buy, intraday_sell = _share(bv, matched, bq), _share(sv, matched, sq)
            stt_value = (
                (bv - intraday_buy + sv - intraday_sell) * r.stt_delivery_pct
                + intraday_sell * r.stt_intraday_sell_pct
            ) * PCT
            stamp_value = (
                (bv - intraday_buy) * r.stamp_delivery_buy_pct
                + intraday_buy * r.stamp_intraday_buy_pct
            ) * PCT
            delivered_out = sq > matched
        turnover = bv + sv
        transaction = _paise(turnover * r.nse_transaction_pct * PCT)
        sebi = _paise(turnover * r.sebi_rupees_per_crore / CRORE)
        out = ChargesBreakdown(
            brokerage,
            _rupees(stt_value),
            transaction,
            sebi,
            _paise(stamp_value),
            _paise((brokerage + transaction + sebi) * r.gst_pct * PCT),
        )
        if self.dp and delivered_out:
            if self._dp_charge is None:
                self._dp_charge = dp_charge(self.trade_date, history=self.history)
            out = out + self._dp_charge
        return out


def texts(b: ChargesBreakdown) -> tuple[str, ...]:
    """Every component and the total as text: equal values with equal exponents."""
    return tuple(str(v) for v in b.as_dict().values())


def price(rng: random.Random) -> D:
    kind = rng.random()
    if kind < 0.35:  # on the 0.05 tick grid
        return D(rng.randint(20, 200_000) * 5) / 100
    if kind < 0.65:  # the backtester's average prices: 4 decimals
        return D(rng.randint(1_000, 50_000_000)) / 10_000
    if kind < 0.85:  # small round prices: half-paisa brokerage, transaction and stamp edges
        return D(rng.choice([1, 2, 4, 5, 8, 10, 16, 20, 25, 40, 50, 100, 125, 200, 500]))
    if kind < 0.95:  # whole rupees and half-rupee STT edges (e.g. 500 x 1 x 0.1% = 0.50)
        return D(rng.randint(1, 5_000))
    return D(rng.randint(1, 10**9)) / 10**7  # off the 4-decimal grid: the Decimal formulas


def day_of_fills(rng: random.Random) -> list[TradeFill]:
    orders = [f"o{k}" for k in range(rng.randint(1, 4))]
    out = []
    for _ in range(rng.randint(1, 10)):
        side = rng.choice(["BUY", "SELL"])
        quantity = rng.choice([1, 2, 3, 5, 7, 10, 40, 100, 333, 1000, rng.randint(1, 5000)])
        out.append(TradeFill(rng.choice(orders) + side[0], side, quantity, price(rng)))  # type: ignore[arg-type]
    return out


def check_same(fills: list[TradeFill], product: str, day: date, **kw: Any) -> None:
    new, ref = ScripDay(product, day, **kw), ReferenceScripDay(product, day, **kw)
    assert texts(new.total) == texts(ref.total)
    for fill in fills:
        assert texts(new.add(fill)) == texts(ref.add(fill)), fill
        assert texts(new.total) == texts(ref.total)


@pytest.mark.parametrize("seed", range(8))
def test_paise_charges_equal_the_decimal_formulas_on_random_days(seed: int):
    rng = random.Random(seed)
    for _ in range(500):
        check_same(
            day_of_fills(rng),
            rng.choice(["CNC", "MIS"]),
            rng.choice(DAYS),
            dp=rng.random() < 0.8,
        )


def test_half_paisa_and_half_rupee_edges_round_up_as_the_decimals_do():
    day = date(2025, 3, 3)
    for value in range(1, 3000):  # turnover Rs 0.05 .. 150 in 5 paise steps, and rupees
        for p, q in ((D(value) / 20, 1), (D(value), 1), (D(value) / 20, 7)):
            for product in ("CNC", "MIS"):
                for sides in (["BUY"], ["SELL"], ["BUY", "SELL"], ["SELL", "BUY"]):
                    fills = [TradeFill(f"o{s}", s, q, p) for s in sides]  # type: ignore[arg-type]
                    check_same(fills, product, day)


def test_partial_same_day_netting_uses_the_decimal_share():
    # 3 bought, 7 sold (and the reverse): a side's share at its average price does not divide
    day = date(2024, 10, 3)
    for product in ("CNC", "MIS"):
        fills = [
            TradeFill("a", "BUY", 3, D("101.35")),  # type: ignore[arg-type]
            TradeFill("b", "BUY", 4, D("101.40")),  # type: ignore[arg-type]
            TradeFill("c", "SELL", 7, D("99.95")),  # type: ignore[arg-type]
            TradeFill("d", "SELL", 2, D("100.0333")),  # type: ignore[arg-type]
            TradeFill("e", "BUY", 9, D("98.1234")),  # type: ignore[arg-type]
        ]
        check_same(fills, product, day)
        check_same(list(reversed(fills)), product, day)


def test_prices_off_the_grid_and_huge_days_fall_back_to_decimals():
    day = date(2025, 3, 3)
    fills = [
        TradeFill("a", "BUY", 10, D("100.05")),  # type: ignore[arg-type]
        TradeFill("b", "SELL", 3, D("100.123456789")),  # type: ignore[arg-type]  # off the grid
        TradeFill("c", "SELL", 7, D("99.95")),  # type: ignore[arg-type]
    ]
    check_same(fills, "CNC", day)
    huge = [
        TradeFill("a", "BUY", 10**9, D("123456.78")),  # type: ignore[arg-type]  # Rs 1.2e14
        TradeFill("b", "SELL", 10**9, D("123456.79")),  # type: ignore[arg-type]
        TradeFill("c", "SELL", 3, D("5")),  # type: ignore[arg-type]
    ]
    check_same(huge, "CNC", day)
    check_same(huge, "MIS", day)
    float_price = [TradeFill("a", "BUY", 3, 0.1)]  # type: ignore[arg-type]  # a float's digits
    check_same(float_price, "CNC", day)


def test_unusual_rates_fall_back_to_decimals():
    base = RATE_HISTORY[-1]
    odd = EquityRates(
        **{  # type: ignore[arg-type]
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "effective_from": date(2020, 7, 1),
            "nse_transaction_pct": D("0.000000001234567"),  # too long for whole numbers
            "brokerage_intraday_cap_rupees": D("20.005"),  # not whole paise
        }
    )
    rng = random.Random(3)
    for _ in range(200):
        check_same(day_of_fills(rng), rng.choice(["CNC", "MIS"]), date(2025, 3, 3), history=(odd,))


def test_day_charges_book_as_before():
    rng = random.Random(11)
    book, ref = DayCharges(), {}
    for _ in range(300):
        day, symbol, product = rng.choice(DAYS), rng.choice("ABC"), rng.choice(["CNC", "MIS"])
        fill = day_of_fills(rng)[0]
        key = (symbol, product, day)
        if key not in ref:
            ref[key] = ReferenceScripDay(product, day)
        assert texts(book.add("NSE", symbol, product, day, fill)) == texts(ref[key].add(fill))
    total = ChargesBreakdown()
    for day_ref in ref.values():
        total = total + day_ref.total
    assert texts(book.total()) == texts(total)


def test_the_kernel_books_the_reference_charges():
    """Fills through `PositionReplay`: each fill's charge, the position's charges and its
    breakdown are what the reference's per-day deltas add up to (to the exponent)."""
    rng = random.Random(5)
    for _ in range(60):
        product = rng.choice(["CNC", "MIS"])
        state = accounting.PositionReplay(("NSE", "X", product))
        days: dict[date, ReferenceScripDay] = {}
        breakdown = ChargesBreakdown()
        at = datetime(2024, 10, 1, 4, 0, tzinfo=UTC)
        held = 0
        for k in range(rng.randint(1, 30)):
            at += timedelta(hours=rng.choice([0, 1, 2, 20, 24, 48]), minutes=rng.randint(0, 59))
            side = "SELL" if held > 0 and rng.random() < 0.5 else "BUY"
            quantity = rng.randint(1, held) if side == "SELL" else rng.randint(1, 300)
            held += quantity if side == "BUY" else -quantity
            p = price(rng)
            charged = rng.random() < 0.95
            order = f"o{k // 2}"
            state.step(
                accounting.Fill(
                    f"t{k}", order, order, "NSE", "X", side, product, quantity, p, at,  # type: ignore[arg-type]
                    charged=charged,
                )
            )  # fmt: skip
            if charged:
                day = (at + timedelta(hours=5, minutes=30)).date()
                ref = days.setdefault(day, ReferenceScripDay(product, day))
                delta = ref.add(TradeFill(order, side, quantity, p))  # type: ignore[arg-type]
                breakdown = breakdown + delta
                expected_fill = delta.total
            else:
                breakdown = breakdown + ChargesBreakdown()
                expected_fill = ChargesBreakdown().total
            assert str(state.pos.fill_charges[f"t{k}"]) == str(expected_fill)
            assert texts(state.pos.charges_breakdown) == texts(breakdown)
            if any(days):
                assert str(state.pos.charges) == str(breakdown.total)


def test_the_dp_charge_of_a_day_is_worked_out_once_per_rates_row():
    """A day's DP charge (whole paise, with its GST) as `dp_charge` gives it, for every row
    of the history and for rows of unusual rates, the first time and when remembered."""
    from dalal_shared.charges import _dp_paise, dp_charge

    base = RATE_HISTORY[-1]
    odd = [
        EquityRates(
            **{  # type: ignore[arg-type]
                **{f: getattr(base, f) for f in base.__dataclass_fields__},
                "dp_rupees_per_scrip": dp,
                "gst_pct": gst,
            }
        )
        for dp, gst in ((D("15.935"), D("18")), (D("0"), D("18")), (D("13.5"), D("12.345")))
    ]
    for row in [*RATE_HISTORY, *odd]:
        want = dp_charge(row.effective_from, history=(row,))
        for _ in range(2):  # worked out, then remembered
            assert _dp_paise(row) == (int(want.dp.scaleb(2)), int(want.gst.scaleb(2)))
    for row in RATE_HISTORY:  # a CNC sell books the DP charge of its day's row
        day = ScripDay("CNC", row.effective_from, history=RATE_HISTORY)
        delta = day.add_trade("o", False, 1, D("100"))
        assert delta[6] == int(dp_charge(row.effective_from).dp.scaleb(2))
