"""Zerodha's charges on NSE equity orders, as dated rates with history.

One model for the ledger, paper trading, kitesim and the backtester. Money is `Decimal`
rupees. Each `EquityRates` row says from which date it applies and where its figures come from;
`rates_on(day)` picks the row in force on a trade date. Rates before 2020-07-01 (when stamp
duty became uniform across states) are not modelled: `rates_on` refuses earlier dates.

Rounding, as on Zerodha's contract notes and brokerage calculator: STT to the nearest rupee,
every other component to the paisa (half up), GST on the rounded components it applies to.
Charges are computed per executed order (`order_charges`); the DP charge is per scrip per day
on delivery sells (`dp_charge`), so the caller applies it once per scrip and day.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

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
    """Charges of one executed order (or of one DP debit), rupees."""

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
        return ChargesBreakdown(
            brokerage=self.brokerage + other.brokerage,
            stt=self.stt + other.stt,
            transaction=self.transaction + other.transaction,
            sebi=self.sebi + other.sebi,
            stamp=self.stamp + other.stamp,
            gst=self.gst + other.gst,
            dp=self.dp + other.dp,
            other=self.other + other.other,
        )


def _paise(value: Decimal) -> Decimal:
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def _rupees(value: Decimal) -> Decimal:
    return value.quantize(RUPEE, rounding=ROUND_HALF_UP).quantize(PAISA)


def order_charges(
    side: Side | str,
    product: Product | str,
    quantity: int,
    price: Decimal,
    trade_date: date,
    *,
    history: tuple[EquityRates, ...] = RATE_HISTORY,
) -> ChargesBreakdown:
    """Charges of one executed NSE equity order of `quantity` shares at average `price`."""
    side = Side(side)
    product = Product(product)
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    price = Decimal(price)
    r = rates_on(trade_date, history)
    turnover = price * quantity
    if product is Product.MIS:
        brokerage = min(_paise(turnover * r.brokerage_intraday_pct * PCT),
                        r.brokerage_intraday_cap_rupees)  # fmt: skip
        stt = _rupees(turnover * r.stt_intraday_sell_pct * PCT) if side is Side.SELL else Decimal(0)
        stamp_pct = r.stamp_intraday_buy_pct
    else:
        brokerage = r.brokerage_delivery_rupees
        stt = _rupees(turnover * r.stt_delivery_pct * PCT)
        stamp_pct = r.stamp_delivery_buy_pct
    transaction = _paise(turnover * r.nse_transaction_pct * PCT)
    sebi = _paise(turnover * r.sebi_rupees_per_crore / CRORE)
    stamp = _paise(turnover * stamp_pct * PCT) if side is Side.BUY else Decimal("0")
    gst = _paise((brokerage + transaction + sebi) * r.gst_pct * PCT)
    return ChargesBreakdown(
        brokerage=_paise(Decimal(brokerage)),
        stt=stt,
        transaction=transaction,
        sebi=sebi,
        stamp=stamp,
        gst=gst,
    )


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
