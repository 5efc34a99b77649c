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
    reference_price: Decimal | None = None  # an LTP for MARKET orders, when known
    capital_cap_rupees: Decimal | None = None  # live mode only
    open_orders_value_rupees: Decimal = Decimal("0")


def _reject(command: PlaceOrder, reason: str, message: str) -> OrderRejected:
    return OrderRejected(client_order_id=command.client_order_id, reason=reason, message=message)


def order_value(command: PlaceOrder, reference_price: Decimal | None) -> Decimal | None:
    price = command.price or command.trigger_price or reference_price
    return None if price is None else price * command.quantity


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
    value = order_value(command, ctx.reference_price)
    if value is not None and value > ctx.max_order_value_rupees:
        return _reject(
            command,
            "max_order_value",
            f"order value Rs {value:.2f} exceeds the limit of Rs {ctx.max_order_value_rupees}",
        )
    if ctx.capital_cap_rupees is not None and value is not None:
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
