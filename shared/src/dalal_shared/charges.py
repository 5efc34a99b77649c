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
from collections.abc import Iterable
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


class ScripDay:
    """One scrip's fills of one day in one product, added in execution order.

    `add` returns what the fill adds to the day's charges, so the sum of the returned
    breakdowns is always `day_charges` of the fills so far: the per-fill charges every
    consumer books (backtester, ledger, kitesim). Work per fill: O(orders of the day)."""

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
        self.total = ChargesBreakdown()
        self._mis = self.product is Product.MIS
        # each side's quantity and value so far (`quantity` and `value` as dicts)
        self._bought, self._sold = 0, 0
        self._buy_value, self._sell_value = Decimal(0), Decimal(0)
        # per (order, is a buy), in order of first execution: [quantity, value, intraday,
        # brokerage]
        self._orders: dict[tuple[str, bool], list[Any]] = {}
        self._dp_charge: ChargesBreakdown | None = None

    @property
    def quantity(self) -> dict[Side, int]:
        return {Side.BUY: self._bought, Side.SELL: self._sold}

    @property
    def value(self) -> dict[Side, Decimal]:
        return {Side.BUY: self._buy_value, Side.SELL: self._sell_value}

    @property
    def intraday_quantity(self) -> int:
        """Units bought and sold the same day (all of them for MIS)."""
        if self._mis:
            return max(self._bought, self._sold)
        return min(self._bought, self._sold)

    def add(self, fill: TradeFill) -> ChargesBreakdown:
        buy = fill.side is Side.BUY
        row = self._orders.get((fill.order_id, buy))
        if row is None:
            row = self._orders[(fill.order_id, buy)] = [0, Decimal(0), 0, Decimal(0)]
        turnover = fill.price * fill.quantity
        row[0] += fill.quantity
        row[1] += turnover
        row[2] = -1  # its brokerage is due again
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

    def _brokerage(self) -> Decimal:
        r, mis = self.rates, self._mis
        matched = min(self._bought, self._sold)
        left_buy = left_sell = matched  # FIFO: each side's first units
        total = Decimal(0)
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
                row[3] = min(pct, r.brokerage_intraday_cap_rupees) if intraday else Decimal(0)
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
            if self._dp_charge is None:  # the same for every fill of the day
                self._dp_charge = dp_charge(self.trade_date, history=self.history)
            out = out + self._dp_charge
        return out


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
