"""Zerodha's charges on NSE equity, as dated rates with history, and the day-netting rule.

One model for the ledger, kitesim, the backtester (and so paper and sim P&L). Money is `Decimal`
rupees. Each `EquityRates` row says from which date it applies and where its figures come from;
`rates_on(day)` picks the row in force on a trade date. Rates before 2020-07-01 (when stamp
duty became uniform across states) are not modelled: `rates_on` refuses earlier dates.

**Charges are a function of one scrip's fills of one day** (`day_charges`), because whether a
CNC buy is delivery or intraday depends on what else happens that day:

* A CNC buy and sell of the same scrip on the same day are intraday for the matched quantity
  (min(bought, sold)); the rest is delivery. This is the exchange's netting: NSE computes STT
  from the day's aggregate per client and security (total buy/sell quantity and value, volume
  weighted average prices; NSE circular NSE/CMO/0146/2004, "STT calculation in Cash Market
  Segment", https://nseindia.com/content/circulars/cmtr5588.htm), and Zerodha charges the
  squared-off part as intraday: "All trades that are squared off on the same day are considered
  as intraday trades ... the STT charges will be applicable as per the charge sheet of Equity
  Intraday" (https://tradingqna.com/t/stt-chargeable-on-intraday-trade-made-using-cnc/9264).
  Selling holdings and buying them back the same day nets the same way
  (https://tradingqna.com/t/selling-delivery-stocks-and-buying-on-same-day/93358).
* Intraday part: brokerage min(0.03%, Rs 20) per executed order on the order's intraday
  value (an order's intraday quantity: the side's first `matched` units in execution order),
  STT 0.025% on the intraday sell value (matched x sell WAP), stamp 0.003% on the intraday buy
  value (matched x buy WAP), no DP charge.
* Delivery part: no brokerage, STT 0.1% on delivery buy and sell value (unmatched quantity x
  WAP), stamp 0.015% on the delivery buy value, and the DP charge once per scrip per day when
  some quantity is delivered out (a delivery sell).
* BTST (sold the next day, before the shares reach the demat account) is a delivery sell and
  pays the DP charge: Zerodha has levied DP on BTST sells since 2021-06-02, when it began
  crediting and debiting the client's own demat account instead of its pool account
  (https://support.zerodha.com/category/account-opening/getting-started/charges/articles/dp-charges-for-btst-trades).
  Older forum answers saying BTST pays no DP describe the process before that date.
* MIS is intraday whatever it nets to; products are not netted with each other (Kite keeps
  CNC and MIS positions apart; the exchange would net them, a case the engine never creates).

Rounding, as on Zerodha's contract notes and brokerage calculator: STT to the nearest rupee
(half up) on the scrip's day total (NSE computes STT per client, security and day, as above;
Zerodha's calculator rounds STT to the rupee: https://tradingqna.com/t/stt-zerodha-brokerage-calculator/21903),
brokerage per executed order to the paisa, every other component on the scrip's day total to
the paisa (half up), GST on the rounded components it applies to.

Per-fill charges: a fill pays the increase of its scrip-day's charges (`ScripDay.add`), so
the charges booked after any prefix of the day's fills are exactly `day_charges` of that
prefix, and the day's total is right however it is split. A buy is booked at delivery rates
when it fills (nothing else is known yet); a same-day sell that turns it intraday pays the
difference, which can be negative (the buy's delivery STT and stamp are given back).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

PAISA = Decimal("0.01")
RUPEE = Decimal("1")
CRORE = Decimal("10000000")
PCT = Decimal("0.01")


class Product(enum.StrEnum):
    """Kite product codes of NSE equity."""

    CNC = "CNC"  # delivery
    MIS = "MIS"  # intraday


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class EquityRates:
    """Zerodha's NSE equity charges from `effective_from` until the next row starts."""

    effective_from: date
    source: str
    brokerage_intraday_pct: Decimal  # of turnover, per executed order ...
    brokerage_intraday_cap_rupees: Decimal  # ... or this, whichever is lower
    brokerage_delivery_rupees: Decimal
    stt_delivery_pct: Decimal  # both sides
    stt_intraday_sell_pct: Decimal  # sell side only
    nse_transaction_pct: Decimal  # both sides, exchange transaction charge
    sebi_rupees_per_crore: Decimal
    stamp_delivery_buy_pct: Decimal  # buy side only
    stamp_intraday_buy_pct: Decimal  # buy side only
    gst_pct: Decimal  # on brokerage + transaction + SEBI (+ DP, + square-off fee)
    dp_rupees_per_scrip: Decimal  # before GST, per scrip per day of delivery sells
    auto_square_off_rupees: Decimal  # before GST, per MIS order the broker squares off


def _d(text: str) -> Decimal:
    return Decimal(text)


_BASE = {
    "brokerage_intraday_pct": _d("0.03"),
    "brokerage_intraday_cap_rupees": _d("20"),
    "brokerage_delivery_rupees": _d("0"),
    "stt_delivery_pct": _d("0.1"),
    "stt_intraday_sell_pct": _d("0.025"),
    "sebi_rupees_per_crore": _d("10"),
    "stamp_delivery_buy_pct": _d("0.015"),
    "stamp_intraday_buy_pct": _d("0.003"),
    "gst_pct": _d("18"),
    "auto_square_off_rupees": _d("50"),
}

# Oldest first. Brokerage (0 delivery; 0.03% or Rs 20 intraday), STT (Finance Act 2013 rates),
# GST 18% (since 2017-07-01), SEBI Rs 10/crore and uniform stamp duty (Indian Stamp Act
# amendment, 2020-07-01) are unchanged across the rows; what changed is the NSE transaction
# charge and Zerodha's DP charge.
RATE_HISTORY: tuple[EquityRates, ...] = (
    EquityRates(
        effective_from=date(2020, 7, 1),
        source="Zerodha charges page as published mid-2020: NSE txn 0.00325%; DP Rs 13.50",
        nse_transaction_pct=_d("0.00325"),
        dp_rupees_per_scrip=_d("13.50"),
        **_BASE,
    ),
    EquityRates(
        effective_from=date(2021, 1, 1),
        source="NSE raised cash-market transaction charges by 6% from 2021-01-01 (to fund its "
        "IPFT after broker defaults): 0.00325% -> 0.00345%, as on Zerodha's page 2021-2023",
        nse_transaction_pct=_d("0.00345"),
        dp_rupees_per_scrip=_d("13.50"),
        **_BASE,
    ),
    EquityRates(
        effective_from=date(2023, 4, 1),
        source="NSE rolled the 2021 increase back from 2023-04-01 (board decision of "
        "2023-03-23); Zerodha's page then showed NSE txn 0.00322% until 2024-09-30",
        nse_transaction_pct=_d("0.00322"),
        dp_rupees_per_scrip=_d("13.50"),
        **_BASE,
    ),
    EquityRates(
        effective_from=date(2024, 10, 1),
        source="NSE flat transaction charge (SEBI true-to-label) from 2024-10-01: 0.00297%",
        nse_transaction_pct=_d("0.00297"),
        dp_rupees_per_scrip=_d("13.50"),
        **_BASE,
    ),
    EquityRates(
        effective_from=date(2024, 11, 1),
        source="Zerodha charges page 2025: DP Rs 13 + GST (Rs 15.34) per scrip per day",
        nse_transaction_pct=_d("0.00297"),
        dp_rupees_per_scrip=_d("13.00"),
        **_BASE,
    ),
)


class RatesNotKnownError(ValueError):
    """No rate row covers the date asked for."""


def rates_on(day: date, history: tuple[EquityRates, ...] = RATE_HISTORY) -> EquityRates:
    """The rates in force on `day`."""
    current: EquityRates | None = None
    for row in history:
        if row.effective_from <= day:
            current = row
        else:
            break
    if current is None:
        raise RatesNotKnownError(
            f"no Zerodha equity rates before {history[0].effective_from} (asked for {day})"
        )
    return current


@dataclass(frozen=True, slots=True)
class ChargesBreakdown:
    """Charges, by component, rupees (of a scrip's day, a fill, an order or a DP debit)."""

    brokerage: Decimal = Decimal("0")
    stt: Decimal = Decimal("0")
    transaction: Decimal = Decimal("0")
    sebi: Decimal = Decimal("0")
    stamp: Decimal = Decimal("0")
    gst: Decimal = Decimal("0")
    dp: Decimal = Decimal("0")
    other: Decimal = Decimal("0")

    @property
    def total(self) -> Decimal:
        return (
            self.brokerage
            + self.stt
            + self.transaction
            + self.sebi
            + self.stamp
            + self.gst
            + self.dp
            + self.other
        )

    def __add__(self, other: ChargesBreakdown) -> ChargesBreakdown:
        # spelled out: this runs for every fill of a backtest (fields() per call cost ~25%)
        return ChargesBreakdown(
            self.brokerage + other.brokerage,
            self.stt + other.stt,
            self.transaction + other.transaction,
            self.sebi + other.sebi,
            self.stamp + other.stamp,
            self.gst + other.gst,
            self.dp + other.dp,
            self.other + other.other,
        )

    def __sub__(self, other: ChargesBreakdown) -> ChargesBreakdown:
        return ChargesBreakdown(
            self.brokerage - other.brokerage,
            self.stt - other.stt,
            self.transaction - other.transaction,
            self.sebi - other.sebi,
            self.stamp - other.stamp,
            self.gst - other.gst,
            self.dp - other.dp,
            self.other - other.other,
        )

    def as_dict(self) -> dict[str, Decimal]:
        """Every component and the total, rupees."""
        return {f.name: getattr(self, f.name) for f in fields(ChargesBreakdown)} | {
            "total": self.total
        }


def _paise(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def _rupees(value: Decimal) -> Decimal:
    return value.quantize(RUPEE, rounding=ROUND_HALF_UP).quantize(PAISA)


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One executed trade as the charges model sees it (an order fills in one or more)."""

    order_id: str
    side: Side
    quantity: int
    price: Decimal

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError("quantity must be positive")
        if type(self.side) is not Side:  # one per fill of a backtest: convert only when needed
            object.__setattr__(self, "side", _SIDES.get(self.side) or Side(self.side))
        if type(self.price) is not Decimal:
            object.__setattr__(self, "price", Decimal(self.price))


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}


def _share(value: Decimal, part: int, whole: int) -> Decimal:
    """`part` units of `whole` worth `value` together, at the weighted average price."""
    if part == whole:
        return value
    if part == 0:
        return Decimal(0)
    return value * part / whole


def day_charges(
    fills: Iterable[TradeFill],
    product: Product | str,
    trade_date: date,
    *,
    history: tuple[EquityRates, ...] = RATE_HISTORY,
    dp: bool = True,
) -> ChargesBreakdown:
    """Every charge of one scrip's fills of one day in one product (fills in execution order).

    CNC nets intraday by matched quantity (see the module docstring); MIS is all intraday.
    `dp=False` leaves the DP charge out (a single order's charges, `order_charges`)."""
    day = ScripDay(product, trade_date, history=history, dp=dp)
    for fill in fills:
        day.add(fill)
    return day.total


def order_charges(
    side: Side | str,
    product: Product | str,
    quantity: int,
    price: Decimal,
    trade_date: date,
    *,
    history: tuple[EquityRates, ...] = RATE_HISTORY,
) -> ChargesBreakdown:
    """Charges of one executed order of `quantity` shares at average `price`, alone on its
    scrip's day (a CNC order is then delivery), without the DP charge: a quote for one order.
    Booked charges come from `day_charges` / `ScripDay`, which see the whole day."""
    fill = TradeFill("order", Side(side), quantity, Decimal(price))
    return day_charges([fill], product, trade_date, history=history, dp=False)


# Whole-number charges. Every price a consumer books is on a grid of 1/10,000 rupee (Kite's
# prices have 2 decimals, the backtester's average prices 4), so a day's values are whole
# "units" of 1/10,000 rupee and each component is a ratio of whole numbers rounded half up:
# the same paise as the Decimal formulas, which are exact within these bounds (at most 28 of
# the context's 28 digits: values under 1e12 rupees with 4 decimals, rates under 1000 with at
# most 6 digits and 8 decimals). What is not whole (a price with more decimals, a share of a
# side at its average price that does not divide) is computed with the Decimal formulas, to
# paise, as is a day past `_EXACT_UNITS` or one of rates outside those bounds.
_EXACT_UNITS = 10**16  # a scrip-day's turnover (units of 1/10,000 rupee) from which: Decimal
_RATE_DIGITS = 6
_RATE_PLACES = 8
_RATE_LIMIT = Decimal(1000)

Paise = tuple[int, int, int, int, int, int, int]  # brokerage, STT, txn, SEBI, stamp, GST, DP


def _half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (numerator >= 0, denominator > 0) to a whole, half up."""
    return (2 * numerator + denominator) // (2 * denominator)


def _to_paise(rupees: Decimal) -> int:
    """A Decimal that is whole paise (quantized), as an int."""
    return int(rupees.scaleb(2))


class _WholeRates:
    """One `EquityRates` row as whole-number ratios: paise = units x num / den, half up."""

    __slots__ = (
        "brokerage_cap",
        "brokerage_den",
        "brokerage_num",
        "gst_den",
        "gst_num",
        "sebi_den",
        "sebi_num",
        "stamp_delivery",
        "stamp_den",
        "stamp_intraday",
        "stt_delivery",
        "stt_den",
        "stt_intraday",
        "txn_den",
        "txn_num",
    )

    def __init__(self, r: EquityRates):
        bn, bd = r.brokerage_intraday_pct.as_integer_ratio()
        self.brokerage_num, self.brokerage_den = bn, bd * 10**4
        self.brokerage_cap = _to_paise(r.brokerage_intraday_cap_rupees)
        a, b = r.stt_delivery_pct.as_integer_ratio()
        c, d = r.stt_intraday_sell_pct.as_integer_ratio()
        self.stt_delivery, self.stt_intraday, self.stt_den = a * d, c * b, b * d * 10**6  # rupees
        e, f = r.stamp_delivery_buy_pct.as_integer_ratio()
        g, h = r.stamp_intraday_buy_pct.as_integer_ratio()
        self.stamp_delivery, self.stamp_intraday, self.stamp_den = e * h, g * f, f * h * 10**4
        tn, td = r.nse_transaction_pct.as_integer_ratio()
        self.txn_num, self.txn_den = tn, td * 10**4
        sn, sd = r.sebi_rupees_per_crore.as_integer_ratio()
        self.sebi_num, self.sebi_den = sn, sd * 10**9
        gn, gd = r.gst_pct.as_integer_ratio()
        self.gst_num, self.gst_den = gn, gd * 100


_WHOLE_RATES: dict[int, tuple[EquityRates, _WholeRates | None]] = {}  # by id(), with the row


def _whole_rates(r: EquityRates) -> _WholeRates | None:
    """`r` as whole-number ratios, or None when a rate is out of the bounds where the Decimal
    formulas are exact (or the brokerage cap is not whole paise)."""
    known = _WHOLE_RATES.get(id(r))
    if known is not None and known[0] is r:
        return known[1]
    rates = (
        r.brokerage_intraday_pct,
        r.stt_delivery_pct,
        r.stt_intraday_sell_pct,
        r.nse_transaction_pct,
        r.sebi_rupees_per_crore,
        r.stamp_delivery_buy_pct,
        r.stamp_intraday_buy_pct,
        r.gst_pct,
    )
    cap = r.brokerage_intraday_cap_rupees
    usable = (
        all(
            x.is_finite()
            and 0 <= x < _RATE_LIMIT
            and len(x.as_tuple().digits) <= _RATE_DIGITS
            and x.as_tuple().exponent >= -_RATE_PLACES  # type: ignore[operator]
            for x in rates
        )
        and cap.is_finite()
        and 0 <= cap < _RATE_LIMIT
        and cap == cap.quantize(PAISA)
    )
    whole = _WholeRates(r) if usable else None
    _WHOLE_RATES[id(r)] = (r, whole)
    return whole


_DP_PAISE: dict[int, tuple[EquityRates, tuple[int, int]]] = {}  # by id(), with the row


def _dp_paise(r: EquityRates) -> tuple[int, int]:
    """`dp_charge` of a day under rates `r` (its DP charge and that charge's GST) in whole
    paise: the same for every day of the row, so worked out once per row."""
    known = _DP_PAISE.get(id(r))
    if known is not None and known[0] is r:
        return known[1]
    dp = _paise(r.dp_rupees_per_scrip)
    paise = (_to_paise(dp), _to_paise(_paise(dp * r.gst_pct * PCT)))
    _DP_PAISE[id(r)] = (r, paise)
    return paise


class ScripDay:
    """One scrip's fills of one day in one product, added in execution order.

    `add` returns what the fill adds to the day's charges, so the sum of the returned
    breakdowns is always `day_charges` of the fills so far: the per-fill charges every
    consumer books (backtester, ledger, kitesim). Work per fill: O(orders of the day).
    `add_trade` is `add` in whole paise per component (the accounting kernel's hot path)."""

    def __init__(
        self,
        product: Product | str,
        trade_date: date,
        *,
        history: tuple[EquityRates, ...] = RATE_HISTORY,
        dp: bool = True,
    ):
        self.product = Product(product)
        self.trade_date = trade_date
        self.rates = rates_on(trade_date, history)
        self.history = history
        self.dp = dp
        self._mis = self.product is Product.MIS
        self._whole = _whole_rates(self.rates)
        # each side's quantity and value so far (`quantity` and `value` as dicts): values in
        # whole units of 1/10,000 rupee while `_whole` is set, Decimal rupees after
        self._bought, self._sold = 0, 0
        self._buy_value: Any = 0 if self._whole else Decimal(0)
        self._sell_value: Any = 0 if self._whole else Decimal(0)
        # per (order, is a buy), in order of first execution: [quantity, value, intraday,
        # brokerage (whole paise; Decimal rupees after `_whole` is cleared)]
        self._orders: dict[tuple[str, bool], list[Any]] = {}
        self.total_paise: Paise = (0, 0, 0, 0, 0, 0, 0)
        self.dp_charged = False  # the day's total includes the DP charge (shares went out)
        self._added = False
        self._dp_paise: tuple[int, int] | None = None  # the DP charge and its GST

    @property
    def total(self) -> ChargesBreakdown:
        """The day's charges so far (an untouched day: zeros)."""
        if not self._added:
            return ChargesBreakdown()
        return breakdown_of_paise(self.total_paise, self.dp_charged)

    @property
    def quantity(self) -> dict[Side, int]:
        return {Side.BUY: self._bought, Side.SELL: self._sold}

    @property
    def value(self) -> dict[Side, Decimal]:
        return {Side.BUY: self._rupees(self._buy_value), Side.SELL: self._rupees(self._sell_value)}

    def _rupees(self, value: Any) -> Decimal:
        return Decimal(value).scaleb(-4) if self._whole else value

    @property
    def intraday_quantity(self) -> int:
        """Units bought and sold the same day (all of them for MIS)."""
        if self._mis:
            return max(self._bought, self._sold)
        return min(self._bought, self._sold)

    def add(self, fill: TradeFill) -> ChargesBreakdown:
        dp_before = self.dp_charged
        delta = self.add_trade(fill.order_id, fill.side is Side.BUY, fill.quantity, fill.price)
        return breakdown_of_paise(delta, dp_before or self.dp_charged)

    def add_trade(self, order_id: str, buy: bool, quantity: int, price: Decimal) -> Paise:
        """Book one trade (`add` without the `TradeFill`): what it adds to each component of
        the day's charges, whole paise (brokerage, STT, transaction, SEBI, stamp, GST, DP)."""
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        if type(price) is not Decimal:
            price = Decimal(price)
        if self._whole is not None:
            try:
                units = int(price.scaleb(4))
            except (ValueError, OverflowError):  # not finite
                units = -1
            if units < 0 or Decimal(units).scaleb(-4) != price:  # not on the grid
                self._to_decimal()
            else:
                turnover: Any = units * quantity
                if self._buy_value + self._sell_value + turnover >= _EXACT_UNITS:
                    self._to_decimal()
        if self._whole is None:
            turnover = price * quantity
        key = (order_id, buy)
        row = self._orders.get(key)
        if row is None:
            row = self._orders[key] = [0, 0 if self._whole is not None else Decimal(0), 0, 0]
        row[0] += quantity
        row[1] += turnover
        row[2] = -1  # its brokerage is due again
        if buy:
            self._bought += quantity
            self._buy_value += turnover
        else:
            self._sold += quantity
            self._sell_value += turnover
        after = self._charges() if self._whole is not None else self._charges_decimal()
        before = self.total_paise
        self.total_paise = after
        self._added = True
        return (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
            after[4] - before[4],
            after[5] - before[5],
            after[6] - before[6],
        )

    def _to_decimal(self) -> None:
        """From whole units to Decimal rupees, for good (the values so far are exact)."""
        self._whole = None
        self._buy_value = Decimal(self._buy_value).scaleb(-4)
        self._sell_value = Decimal(self._sell_value).scaleb(-4)
        for row in self._orders.values():
            row[1] = Decimal(row[1]).scaleb(-4)
            row[3] = Decimal(row[3]).scaleb(-2)

    def _dp(self) -> tuple[int, int]:
        if self._dp_paise is None:  # the same for every fill of the day
            self._dp_paise = _dp_paise(self.rates)
        return self._dp_paise

    def _charges(self) -> Paise:
        """The day's charges in whole paise, from whole units."""
        w = self._whole
        assert w is not None
        bq, sq = self._bought, self._sold
        bv, sv = self._buy_value, self._sell_value
        brokerage = self._brokerage()
        if self._mis:
            stt = _half_up(sv * w.stt_intraday, w.stt_den) * 100
            stamp = _half_up(bv * w.stamp_intraday, w.stamp_den)
            delivered_out = False
        else:
            matched = min(bq, sq)
            if matched and bq != sq:  # a side's share at its average price: Decimal's division
                stt, stamp = self._stt_stamp_decimal(
                    Decimal(bv).scaleb(-4), Decimal(sv).scaleb(-4), bq, sq, matched
                )
            else:
                intraday_buy, intraday_sell = (bv, sv) if matched else (0, 0)
                stt = (
                    _half_up(
                        (bv - intraday_buy + sv - intraday_sell) * w.stt_delivery
                        + intraday_sell * w.stt_intraday,
                        w.stt_den,
                    )
                    * 100
                )
                stamp = _half_up(
                    (bv - intraday_buy) * w.stamp_delivery + intraday_buy * w.stamp_intraday,
                    w.stamp_den,
                )
            delivered_out = sq > matched
        turnover = bv + sv
        transaction = _half_up(turnover * w.txn_num, w.txn_den)
        sebi = _half_up(turnover * w.sebi_num, w.sebi_den)
        gst = _half_up((brokerage + transaction + sebi) * w.gst_num, w.gst_den)
        dp = 0
        self.dp_charged = self.dp and delivered_out
        if self.dp_charged:
            dp, dp_gst = self._dp()
            gst += dp_gst
        return (brokerage, stt, transaction, sebi, stamp, gst, dp)

    def _brokerage(self) -> int:
        w = self._whole
        assert w is not None
        total = 0
        for row, intraday in self._intraday_rows():
            quantity = row[0]
            if intraday != row[2]:
                row[2] = intraday
                if not intraday:
                    row[3] = 0
                else:
                    if intraday == quantity:
                        pct = _half_up(row[1] * w.brokerage_num, w.brokerage_den)
                    else:  # part of the order at its average price: Decimal's division
                        value = _share(Decimal(row[1]).scaleb(-4), intraday, quantity)
                        pct = _to_paise(_paise(value * self.rates.brokerage_intraday_pct * PCT))
                    row[3] = min(pct, w.brokerage_cap)
            total += row[3]
        return total

    def _intraday_rows(self) -> Iterator[tuple[list[Any], int]]:
        """Each order's row with the part of it that is intraday: all of it in MIS; in CNC
        each side's first `min(bought, sold)` units, in order of first execution (FIFO)."""
        mis = self._mis
        left_buy = left_sell = min(self._bought, self._sold)
        for (_order, buy), row in self._orders.items():
            quantity = row[0]
            if mis:
                intraday = quantity
            elif buy:
                intraday = min(quantity, left_buy)
                left_buy -= intraday
            else:
                intraday = min(quantity, left_sell)
                left_sell -= intraday
            yield row, intraday

    def _stt_stamp_decimal(
        self, bv: Decimal, sv: Decimal, bq: int, sq: int, matched: int
    ) -> tuple[int, int]:
        """A CNC day's STT and stamp duty (whole paise) by the Decimal formulas."""
        r = self.rates
        intraday_buy, intraday_sell = _share(bv, matched, bq), _share(sv, matched, sq)
        stt_value = (
            (bv - intraday_buy + sv - intraday_sell) * r.stt_delivery_pct
            + intraday_sell * r.stt_intraday_sell_pct
        ) * PCT
        stamp_value = (
            (bv - intraday_buy) * r.stamp_delivery_buy_pct + intraday_buy * r.stamp_intraday_buy_pct
        ) * PCT
        return _to_paise(_rupees(stt_value)), _to_paise(_paise(stamp_value))

    def _brokerage_decimal(self) -> Decimal:
        r = self.rates
        total = Decimal(0)
        for row, intraday in self._intraday_rows():
            quantity, value = row[0], row[1]
            if intraday != row[2]:
                row[2] = intraday
                pct = _paise(_share(value, intraday, quantity) * r.brokerage_intraday_pct * PCT)
                row[3] = min(pct, r.brokerage_intraday_cap_rupees) if intraday else Decimal(0)
            total += row[3]
        return _paise(total)

    def _charges_decimal(self) -> Paise:
        """The day's charges in whole paise, by the Decimal formulas (any price, any size)."""
        r = self.rates
        bq, sq = self._bought, self._sold
        bv, sv = self._buy_value, self._sell_value
        brokerage = self._brokerage_decimal()
        if self._mis:
            stt = _to_paise(_rupees(sv * r.stt_intraday_sell_pct * PCT))
            stamp = _to_paise(_paise(bv * r.stamp_intraday_buy_pct * PCT))
            delivered_out = False
        else:
            matched = min(bq, sq)
            stt, stamp = self._stt_stamp_decimal(bv, sv, bq, sq, matched)
            delivered_out = sq > matched
        turnover = bv + sv
        transaction = _paise(turnover * r.nse_transaction_pct * PCT)
        sebi = _paise(turnover * r.sebi_rupees_per_crore / CRORE)
        gst = _paise((brokerage + transaction + sebi) * r.gst_pct * PCT)
        dp = 0
        gst_paise = _to_paise(gst)
        self.dp_charged = self.dp and delivered_out
        if self.dp_charged:
            dp, dp_gst = self._dp()
            gst_paise += dp_gst
        return (
            _to_paise(brokerage),
            stt,
            _to_paise(transaction),
            _to_paise(sebi),
            stamp,
            gst_paise,
            dp,
        )


_ZERO_RUPEES = Decimal(0)


def breakdown_of_paise(paise: Sequence[int], dp: bool) -> ChargesBreakdown:
    """A breakdown from whole paise (brokerage, STT, transaction, SEBI, stamp, GST, DP), with
    the Decimals the arithmetic of `ScripDay` breakdowns gives: 2 places (the DP charge a plain
    0 unless `dp`: a DP charge was part of it), `other` a plain 0."""
    return ChargesBreakdown(
        Decimal(paise[0]).scaleb(-2),
        Decimal(paise[1]).scaleb(-2),
        Decimal(paise[2]).scaleb(-2),
        Decimal(paise[3]).scaleb(-2),
        Decimal(paise[4]).scaleb(-2),
        Decimal(paise[5]).scaleb(-2),
        Decimal(paise[6]).scaleb(-2) if dp else _ZERO_RUPEES,
        _ZERO_RUPEES,
    )


DayKey = tuple[str, str, str, date]  # exchange, symbol, product, IST trade date


class DayCharges:
    """Charges of many scrips and days: one `ScripDay` per (exchange, symbol, product, day)."""

    def __init__(self, *, history: tuple[EquityRates, ...] = RATE_HISTORY):
        self.history = history
        self.days: dict[DayKey, ScripDay] = {}

    def add(
        self, exchange: str, symbol: str, product: Product | str, trade_date: date, fill: TradeFill
    ) -> ChargesBreakdown:
        key = (exchange, symbol, str(Product(product)), trade_date)
        day = self.days.get(key)
        if day is None:
            day = self.days[key] = ScripDay(product, trade_date, history=self.history)
        return day.add(fill)

    def total(self, trade_date: date | None = None) -> ChargesBreakdown:
        out = ChargesBreakdown()
        for key, day in self.days.items():
            if trade_date is None or key[3] == trade_date:
                out = out + day.total
        return out

    def forget_before(self, trade_date: date) -> None:
        """Drop the days before `trade_date` (their charges are final)."""
        for key in [k for k in self.days if k[3] < trade_date]:
            del self.days[key]


def dp_charge(
    trade_date: date, *, history: tuple[EquityRates, ...] = RATE_HISTORY
) -> ChargesBreakdown:
    """The depository charge of selling one scrip from the demat account on `trade_date`."""
    r = rates_on(trade_date, history)
    dp = _paise(r.dp_rupees_per_scrip)
    return ChargesBreakdown(dp=dp, gst=_paise(dp * r.gst_pct * PCT))


def auto_square_off_charge(
    trade_date: date, *, history: tuple[EquityRates, ...] = RATE_HISTORY
) -> ChargesBreakdown:
    """The fee for an MIS order the broker squares off (Rs 50 + GST per order)."""
    r = rates_on(trade_date, history)
    fee = _paise(r.auto_square_off_rupees)
    return ChargesBreakdown(other=fee, gst=_paise(fee * r.gst_pct * PCT))
