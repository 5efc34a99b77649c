"""Guards: the checks an order passes before anything is sent to Kite (the last line of
defence, whatever the engine's risk manager already decided). Plain domain code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dalal_shared.calendar import NseCalendar
from dalal_shared.messages import OrderRejected, PlaceOrder


@dataclass(frozen=True)
class GuardContext:
    session_valid: bool
    kill_switch_reason: str | None  # None: released
    now: datetime
    calendar: NseCalendar | None  # None: market hours not enforced (sim clocks differ)
    max_order_value_rupees: Decimal
    reference_price: Decimal | None = None  # the last price, for a MARKET order: None unknown
    market_protection_pct: Decimal = Decimal("0")  # the default, for orders without their own
    capital_cap_rupees: Decimal | None = None  # live mode only
    # what the open BUY orders commit (each type, MARKET at its reference price); None: an
    # open MARKET order could not be priced
    open_orders_value_rupees: Decimal | None = Decimal("0")


def _reject(command: PlaceOrder, reason: str, message: str) -> OrderRejected:
    return OrderRejected(client_order_id=command.client_order_id, reason=reason, message=message)


def worst_price(
    command: PlaceOrder, reference_price: Decimal | None, default_protection_pct: Decimal
) -> Decimal | None:
    """The highest price one share of the order may trade at: its limit; a MARKET order's
    reference price (SL-M: its trigger) widened by its market protection; None when a MARKET
    order has no reference price."""
    if command.order_type in ("LIMIT", "SL"):
        return command.price
    base = command.trigger_price if command.order_type == "SL-M" else reference_price
    if base is None:
        return None
    pct = market_protection(command, default_protection_pct) or Decimal(0)
    return base * (1 + pct / 100)


def order_value(
    command: PlaceOrder,
    reference_price: Decimal | None,
    default_protection_pct: Decimal = Decimal(0),
    quantity: int | None = None,
) -> Decimal | None:
    """The order's value at its worst price (`quantity`: of that many shares); None unknown."""
    price = worst_price(command, reference_price, default_protection_pct)
    return None if price is None else price * (command.quantity if quantity is None else quantity)


def admit(command: PlaceOrder, ctx: GuardContext) -> OrderRejected | None:
    """Why `command` must not be sent now, or None when it may go to Kite."""
    if ctx.kill_switch_reason is not None:
        return _reject(
            command, "kill_switch", f"the kill switch is engaged ({ctx.kill_switch_reason})"
        )
    if not ctx.session_valid:
        return _reject(
            command,
            "no_session",
            "no valid Kite session: log in (`dalal login`) before placing orders",
        )
    if command.order_type in ("LIMIT", "SL") and command.price is None:
        return _reject(command, "input", f"{command.order_type} orders need a price")
    if command.order_type in ("SL", "SL-M") and command.trigger_price is None:
        return _reject(command, "input", f"{command.order_type} orders need a trigger_price")
    value = order_value(command, ctx.reference_price, ctx.market_protection_pct)
    if value is None:
        return _reject(
            command,
            "no_reference_price",
            f"no reference price for {command.exchange}:{command.symbol} (no recent tick, and "
            "Kite's LTP could not be read): a MARKET order cannot be valued, so it is refused; "
            "send a LIMIT order or retry",
        )
    if value > ctx.max_order_value_rupees:
        return _reject(
            command,
            "max_order_value",
            f"order value Rs {value:.2f} (at its worst price) exceeds the limit of "
            f"Rs {ctx.max_order_value_rupees}",
        )
    if ctx.capital_cap_rupees is not None and command.side == "BUY":
        if ctx.open_orders_value_rupees is None:
            return _reject(
                command,
                "no_reference_price",
                "an open MARKET order has no reference price: what the open orders commit is "
                "unknown, so the live capital cap refuses new buys; retry",
            )
        committed = ctx.open_orders_value_rupees + value
        if committed > ctx.capital_cap_rupees:
            return _reject(
                command,
                "capital_cap",
                f"open orders would commit Rs {committed:.2f}, over the live capital cap of "
                f"Rs {ctx.capital_cap_rupees}",
            )
    if ctx.calendar is not None and command.variety == "regular":
        # past the NSE holiday list a weekday counts as a regular session: an exit must still
        # go (the exchange itself refuses orders on a holiday the list does not know yet)
        session = ctx.calendar.session_at(ctx.now, assume_regular=True)
        if session is None:
            return _reject(
                command,
                "market_closed",
                "the NSE cash market is closed (holiday or outside 09:15-15:30 IST); "
                "send an AMO (variety=amo) to queue it for the next session",
            )
        if command.product == "MIS" and ctx.now >= session.mis_square_off:
            return _reject(command, "mis_cutoff", "no fresh MIS orders after 15:20 IST")
    return None


def market_protection(command: PlaceOrder, default_pct: Decimal) -> Decimal | None:
    """The market protection to send: SEBI's retail-algo rules need one on market orders."""
    if command.order_type not in ("MARKET", "SL-M"):
        return None
    return command.market_protection if command.market_protection is not None else default_pct
