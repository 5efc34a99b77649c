"""`dalal` commands for the trading day: orders, positions, P&L, kill switch, engine, quotes.

Every read command takes `--json`. Exit codes scripts can rely on: 0 ok, 1 the service refused
(a business failure: an order that cannot be cancelled, a guard), 2 bad input, 3 a service not
reachable. Errors are one line on stderr naming what was wrong; never a traceback.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dalal_shared.clients import (
    BrokerClient,
    EngineClient,
    PortfolioClient,
    ServiceError,
    ServiceUnavailable,
)
from dalal_shared.errors import ConfigError
from dalal_shared.settings import load_settings
from dalal_shared.stack import StackSettings
from dalal_shared.timeutil import IST

OK, FAILED, BAD_INPUT, UNREACHABLE = 0, 1, 2, 3

console = Console()
err_console = Console(stderr=True)

AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
C = TypeVar("C", BrokerClient, EngineClient, PortfolioClient)


def _fail(command: str, message: str, code: int) -> typer.Exit:
    err_console.print(f"dalal {command}: {message}", highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _client(command: str, cls: type[C]) -> Iterator[C]:
    """The service's typed client at the URL and with the key `dalal status` uses; its errors
    become one line and an exit code."""
    try:
        settings = load_settings(StackSettings)
    except ConfigError as exc:
        raise _fail(command, exc.message, BAD_INPUT) from None
    url = settings.url_of(cls.service)
    client = cls(url, api_key=settings.local_api_key())
    try:
        yield client
    except ServiceUnavailable:
        raise _fail(command, f"{cls.service} is not reachable at {url}", UNREACHABLE) from None
    except ServiceError as exc:
        if exc.status_code in (502, 503, 504):
            raise _fail(command, exc.message, UNREACHABLE) from None
        # an unknown id or a value the service finds malformed is bad input; a refusal (a
        # guard's 422 such as max_order_value or kill_switch, a 409 order_closed) is not
        bad = exc.status_code == 404 or exc.code == "validation_error"
        code = BAD_INPUT if bad else FAILED
        raise _fail(command, exc.message, code) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


OPEN_STATUSES = {
    "PENDING",
    "SUBMITTED",
    "OPEN",
    "TRIGGER PENDING",
    "MODIFYING",
    "CANCELLING",
    "PLACED",
    "UPDATE",
    "AMO REQ RECEIVED",
    "VALIDATION PENDING",
    "PUT ORDER REQ RECEIVED",
}


def _is_open(order: dict[str, Any]) -> bool:
    return str(order.get("status", "")).upper() in OPEN_STATUSES


def _order_row(o: dict[str, Any]) -> list[Any]:
    return [
        o.get("client_order_id"),
        o.get("symbol"),
        o.get("side"),
        o.get("quantity"),
        o.get("order_type"),
        o.get("price"),
        o.get("status"),
        o.get("filled_quantity"),
        o.get("average_price"),
        o.get("status_message") or o.get("reason") or "",
    ]


ORDER_COLUMNS = ["id", "symbol", "side", "qty", "type", "price", "status", "filled", "avg", "note"]


# ---------------------------------------------------------------- orders


def orders(
    open_only: Annotated[bool, typer.Option("--open", help="only orders still working")] = False,
    limit: Annotated[int, typer.Option(min=1, max=5000, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """Orders in the broker's journal, newest first."""
    with _client("orders", BrokerClient) as broker:
        rows = broker.orders(limit=limit)
    if open_only:
        rows = [o for o in rows if _is_open(o)]
    if as_json:
        _print_json(rows)
        return
    _table(f"orders ({len(rows)})", ORDER_COLUMNS, [_order_row(o) for o in rows])


def order(
    client_order_id: Annotated[str, typer.Argument(help="the client_order_id")],
    as_json: AsJson = False,
) -> None:
    """One order with its trades and charges."""
    with _client("order", BrokerClient) as broker:
        body = broker.order(client_order_id)
    if as_json:
        _print_json(body)
        return
    _table(f"order {client_order_id}", ORDER_COLUMNS, [_order_row(body)])
    if body.get("trades"):
        _table(
            "trades",
            ["trade_id", "qty", "price", "filled_at"],
            [[t["trade_id"], t["quantity"], t["price"], t["filled_at"]] for t in body["trades"]],
        )
    if body.get("charges") is not None:
        console.print(f"charges: Rs {body['charges']}", highlight=False)


def cancel(
    client_order_id: Annotated[str, typer.Argument(help="the client_order_id")],
    as_json: AsJson = False,
) -> None:
    """Cancel an open order (exit 1 when the broker refuses, e.g. it is already filled)."""
    with _client("cancel", BrokerClient) as broker:
        body = broker.cancel(client_order_id)
    if as_json:
        _print_json(body)
        return
    console.print(f"{client_order_id}: {body.get('status')}", highlight=False)


def _positive_decimal(name: str, text: str | None, command: str = "modify") -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _fail(command, f"{name} {text!r} is not a number", BAD_INPUT) from None
    if not value.is_finite() or value <= 0:
        raise _fail(command, f"{name} {text!r} must be a positive amount", BAD_INPUT)
    return value


# ---------------------------------------------------------------- orders by hand

_SYMBOL = re.compile(r"^(?:(?P<exchange>NSE|BSE):)?(?P<symbol>[A-Z0-9&\-_.]{1,40})$")
_ORDER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,20}$")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")


def _hand_order(
    command: str,
    side: Literal["BUY", "SELL"],
    instrument: str,
    quantity: int,
    price: str | None,
    trigger_price: str | None,
    order_type: str | None,
    product: str,
    amo: bool,
    client_order_id: str | None,
) -> dict[str, Any]:
    """The order `dalal buy`/`dalal sell` sends, checked here so a bad value is named before
    anything goes out: the type follows from the prices given unless `--type` says it."""
    match = _SYMBOL.match(instrument.strip().upper())
    if match is None:
        raise _fail(command, f"symbol {instrument!r} is not like INFY or NSE:INFY", BAD_INPUT)
    if quantity <= 0:
        raise _fail(command, f"quantity {quantity} must be a positive number of shares", BAD_INPUT)
    limit = _positive_decimal("--price", price, command)
    trigger = _positive_decimal("--trigger-price", trigger_price, command)
    kind = (order_type or "").upper() or (
        ("SL" if limit is not None else "SL-M")
        if trigger is not None
        else ("LIMIT" if limit is not None else "MARKET")
    )
    if kind not in ORDER_TYPES:
        raise _fail(command, f"--type {order_type!r} is not one of {', '.join(ORDER_TYPES)}", 2)
    if kind in ("LIMIT", "SL") and limit is None:
        raise _fail(command, f"a {kind} order needs --price", BAD_INPUT)
    if kind in ("SL", "SL-M") and trigger is None:
        raise _fail(command, f"a {kind} order needs --trigger-price", BAD_INPUT)
    if kind in ("MARKET", "SL-M") and limit is not None:
        raise _fail(command, f"a {kind} order takes no --price", BAD_INPUT)
    if product.upper() not in ("CNC", "MIS"):
        raise _fail(command, f"--product {product!r} is not CNC or MIS", BAD_INPUT)
    coid = client_order_id or f"cli-{secrets.token_hex(7)}"
    if not _ORDER_ID.match(coid):
        raise _fail(command, f"--id {coid!r}: up to 20 letters, digits, '-' or '_'", BAD_INPUT)
    order: dict[str, Any] = {
        "client_order_id": coid,
        "exchange": match.group("exchange") or "NSE",
        "symbol": match.group("symbol"),
        "side": side,
        "quantity": quantity,
        "order_type": kind,
        "product": product.upper(),
        "variety": "amo" if amo else "regular",
    }
    if limit is not None and kind in ("LIMIT", "SL"):
        order["price"] = str(limit)
    if trigger is not None and kind in ("SL", "SL-M"):
        order["trigger_price"] = str(trigger)
    return order


def _send_by_hand(command: str, order: dict[str, Any], as_json: bool) -> None:
    with _client(command, EngineClient) as engine:
        body = engine.submit_order(order)
    if as_json:
        _print_json(body)
        return
    console.print(
        f"{body.get('client_order_id', order['client_order_id'])}: {body.get('status')} "
        f"({order['side']} {order['quantity']} {order['exchange']}:{order['symbol']} "
        f"{order['order_type']} {order['product']}); "
        f"`dalal order {order['client_order_id']}` shows it at the broker",
        highlight=False,
    )


Instrument = Annotated[str, typer.Argument(help="the symbol, e.g. INFY or NSE:INFY")]
Shares = Annotated[int, typer.Argument(help="how many shares")]
PriceOpt = Annotated[
    str | None, typer.Option("--price", help="limit price in rupees (a LIMIT, or an SL order)")
]
TriggerOpt = Annotated[
    str | None,
    typer.Option("--trigger-price", help="trigger in rupees (an SL-M, or an SL with --price)"),
]
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", help="MARKET, LIMIT, SL or SL-M (default: from the prices given)"),
]
ProductOpt = Annotated[str, typer.Option("--product", help="CNC (delivery) or MIS (intraday)")]
AmoOpt = Annotated[
    bool, typer.Option("--amo", help="an after-market order, for the next session's open")
]
IdOpt = Annotated[
    str | None,
    typer.Option(
        "--id",
        help="your client order id (sending the same id again sends nothing new); "
        "default: a fresh cli-... id",
    ),
]


def buy(
    instrument: Instrument,
    quantity: Shares,
    price: PriceOpt = None,
    trigger_price: TriggerOpt = None,
    order_type: TypeOpt = None,
    product: ProductOpt = "CNC",
    amo: AmoOpt = False,
    client_order_id: IdOpt = None,
    as_json: AsJson = False,
) -> None:
    """Buy by hand, through the engine's risk manager and outbox (the path every order takes):
    refused with the rule's name (kill switch, no session, order rate, value over the manual
    book's cap, not enough cash), then the broker's guards. MARKET unless --price/--trigger-price
    say otherwise. Exit 1 when refused, 2 for a bad value, 3 when the engine is not reachable."""
    order = _hand_order(
        "buy", "BUY", instrument, quantity, price, trigger_price, order_type, product, amo,
        client_order_id,
    )  # fmt: skip
    _send_by_hand("buy", order, as_json)


def sell(
    instrument: Instrument,
    quantity: Shares,
    price: PriceOpt = None,
    trigger_price: TriggerOpt = None,
    order_type: TypeOpt = None,
    product: ProductOpt = "CNC",
    amo: AmoOpt = False,
    client_order_id: IdOpt = None,
    as_json: AsJson = False,
) -> None:
    """Sell by hand, through the engine's risk manager and outbox, as `dalal buy`. Positions
    a strategy holds are its own: sell those with `dalal engine flatten` (or let it exit)."""
    order = _hand_order(
        "sell", "SELL", instrument, quantity, price, trigger_price, order_type, product, amo,
        client_order_id,
    )  # fmt: skip
    _send_by_hand("sell", order, as_json)


def modify(
    client_order_id: Annotated[str, typer.Argument(help="the client_order_id")],
    price: Annotated[str | None, typer.Option(help="new limit price (rupees)")] = None,
    quantity: Annotated[int | None, typer.Option(help="new quantity")] = None,
    trigger_price: Annotated[str | None, typer.Option(help="new trigger price (rupees)")] = None,
    as_json: AsJson = False,
) -> None:
    """Change an open order's price, quantity or trigger price (the guards check it again)."""
    changes: dict[str, Any] = {}
    if (p := _positive_decimal("--price", price)) is not None:
        changes["price"] = str(p)
    if (t := _positive_decimal("--trigger-price", trigger_price)) is not None:
        changes["trigger_price"] = str(t)
    if quantity is not None:
        if quantity <= 0:
            raise _fail("modify", f"--quantity {quantity} must be positive", BAD_INPUT)
        changes["quantity"] = quantity
    if not changes:
        raise _fail("modify", "give --price, --quantity or --trigger-price", BAD_INPUT)
    with _client("modify", BrokerClient) as broker:
        body = broker.modify(client_order_id, changes)
    if as_json:
        _print_json(body)
        return
    console.print(f"{client_order_id}: {body.get('status')}", highlight=False)


# ---------------------------------------------------------------- protections (GTTs)

protections_app = typer.Typer(
    help="Stops at the exchange for CNC holdings (Kite GTTs through the broker): they fire "
    "while Dalal is down. Strategies with exchange_stop keep theirs themselves.",
    no_args_is_help=True,
)
PROTECTION_COLUMNS = ["id", "symbol", "qty", "stop", "target", "status", "gtt", "note"]
PROTECTION_STATUSES = ("PENDING", "ACTIVE", "TRIGGERED", "CANCELLED", "EXPIRED", "FAILED")


def _protection_row(p: dict[str, Any]) -> list[Any]:
    return [
        p["client_order_id"],
        p["symbol"],
        p["quantity"],
        p["stop_price"],
        p.get("target_price") or "",
        p["status"],
        p.get("gtt_id") or "",
        (p.get("message") or "")[:60],
    ]


@protections_app.command("list")
def protections_list(
    status: Annotated[
        str | None, typer.Option(help=f"only this status ({', '.join(PROTECTION_STATUSES)})")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """The protections the broker keeps, oldest first."""
    if status is not None and status.upper() not in PROTECTION_STATUSES:
        raise _fail(
            "protections list",
            f"--status {status!r} is not one of {', '.join(PROTECTION_STATUSES)}",
            BAD_INPUT,
        )
    with _client("protections list", BrokerClient) as broker:
        rows = broker.protections(status=status.upper() if status else None)
    if as_json:
        _print_json(rows)
        return
    _table(f"protections ({len(rows)})", PROTECTION_COLUMNS, [_protection_row(p) for p in rows])


@protections_app.command("add")
def protections_add(
    instrument: Instrument,
    quantity: Shares,
    stop: Annotated[str, typer.Option("--stop", help="sell when the price falls to this")],
    target: Annotated[
        str | None, typer.Option("--target", help="or rises to this (a two-leg OCO GTT)")
    ] = None,
    client_order_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="the id the GTT's sell order will carry (the same id again modifies it); "
            "default: a fresh gtt-... id",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Protect a CNC holding with a stop (and a target) at the exchange. Exit 1 when Kite
    refuses the GTT (the answer says why: a trigger within 0.25% of the price, no holding, no
    session), 2 for a bad value."""
    command = "protections add"
    match = _SYMBOL.match(instrument.strip().upper())
    if match is None:
        raise _fail(command, f"symbol {instrument!r} is not like INFY or NSE:INFY", BAD_INPUT)
    if quantity <= 0:
        raise _fail(command, f"quantity {quantity} must be a positive number of shares", BAD_INPUT)
    stop_price = _positive_decimal("--stop", stop, command)
    target_price = _positive_decimal("--target", target, command)
    assert stop_price is not None
    if target_price is not None and target_price <= stop_price:
        raise _fail(command, f"--target {target} must be above --stop {stop}", BAD_INPUT)
    coid = client_order_id or f"gtt-{secrets.token_hex(7)}"
    if not _ORDER_ID.match(coid):
        raise _fail(command, f"--id {coid!r}: up to 20 letters, digits, '-' or '_'", BAD_INPUT)
    body: dict[str, Any] = {
        "client_order_id": coid,
        "exchange": match.group("exchange") or "NSE",
        "symbol": match.group("symbol"),
        "quantity": quantity,
        "stop_price": str(stop_price),
    }
    if target_price is not None:
        body["target_price"] = str(target_price)
    with _client(command, BrokerClient) as broker:
        row = broker.protect(body)
    if as_json:
        _print_json(row)
    else:
        _table(f"protection {coid}", PROTECTION_COLUMNS, [_protection_row(row)])
    if row.get("status") == "FAILED":
        raise typer.Exit(FAILED)


@protections_app.command("remove")
def protections_remove(
    client_order_id: Annotated[str, typer.Argument(help="the protection's client_order_id")],
    as_json: AsJson = False,
) -> None:
    """Remove a protection (its GTT at Kite)."""
    with _client("protections remove", BrokerClient) as broker:
        row = broker.unprotect(client_order_id)
    if as_json:
        _print_json(row)
        return
    console.print(f"{client_order_id}: {row.get('status')}", highlight=False)


# ---------------------------------------------------------------- positions and P&L


def positions(
    include_closed: Annotated[bool, typer.Option("--all", help="flat positions too")] = False,
    as_json: AsJson = False,
) -> None:
    """The portfolio's positions with their marks and unrealised P&L."""
    with _client("positions", PortfolioClient) as portfolio:
        rows = portfolio.positions(include_closed=include_closed)
    if as_json:
        _print_json(rows)
        return
    _table(
        f"positions ({len(rows)})",
        ["symbol", "product", "qty", "avg", "last", "unrealised", "realised net"],
        [
            [
                p.get("symbol"),
                p.get("product"),
                p.get("quantity"),
                p.get("average_price"),
                p.get("last_price"),
                p.get("unrealised_pnl"),
                p.get("realised_pnl_net"),
            ]
            for p in rows
        ],
    )


def _day_of(stamp: str) -> date:
    return datetime.fromisoformat(stamp).astimezone(IST).date()


def pnl(
    today: Annotated[bool, typer.Option("--today", help="round trips closed today (IST)")] = False,
    from_: Annotated[
        str | None, typer.Option("--from", help="round trips closed on or after yyyy-mm-dd")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Realised (net of charges) and unrealised P&L: overall, today, or since a date."""
    if today and from_:
        raise _fail("pnl", "give --today or --from, not both", BAD_INPUT)
    since: date | None = None
    if from_ is not None:
        try:
            since = date.fromisoformat(from_)
        except ValueError:
            raise _fail("pnl", f"--from {from_!r} is not a date (yyyy-mm-dd)", BAD_INPUT) from None
    if today:
        since = datetime.now(IST).date()
    with _client("pnl", PortfolioClient) as portfolio:
        book = portfolio.portfolio()
        trips = portfolio.trades() if since is not None else []
    if since is None:
        out = {
            "period": "all",
            "realised_net": book.get("realised_net"),
            "realised_gross": book.get("realised_gross"),
            "charges": book.get("charges"),
            "unrealised": book.get("unrealised"),
            "equity": book.get("equity"),
            "cash": book.get("cash"),
        }
    else:
        closed = [t for t in trips if t.get("closed_at") and _day_of(t["closed_at"]) >= since]
        net = sum((Decimal(str(t.get("realised_pnl_net") or 0)) for t in closed), Decimal(0))
        gross = sum((Decimal(str(t.get("realised_pnl_gross") or 0)) for t in closed), Decimal(0))
        out = {
            "period": f"since {since.isoformat()}",
            "round_trips": len(closed),
            "realised_net": str(net),
            "realised_gross": str(gross),
            "charges": str(gross - net),
            "unrealised": book.get("unrealised"),
            "equity": book.get("equity"),
        }
    if as_json:
        _print_json(out)
        return
    _table(
        f"P&L ({out['period']})", ["", "rupees"], [[k, v] for k, v in out.items() if k != "period"]
    )


# ---------------------------------------------------------------- kill switch

kill_switch_app = typer.Typer(
    help="The broker's kill switch: refuse every new order (on), allow them again (off).",
    no_args_is_help=True,
)


def _ks_line(state: dict[str, Any]) -> str:
    if state.get("engaged"):
        reason = state.get("reason") or "no reason"
        return f"kill switch: ENGAGED ({reason}; by {state.get('by')}, at {state.get('at')})"
    return "kill switch: off"


@kill_switch_app.command("status")
def ks_status(as_json: AsJson = False) -> None:
    """Is the kill switch engaged?"""
    with _client("kill-switch status", BrokerClient) as broker:
        state = broker.kill_switch()
    if as_json:
        _print_json(state)
    else:
        console.print(_ks_line(state), highlight=False)


@kill_switch_app.command("on")
def ks_on(
    reason: Annotated[str, typer.Option(help="why (kept with the switch)")] = "operator",
    cancel_open: Annotated[
        bool, typer.Option("--cancel-open", help="also cancel every open order")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: AsJson = False,
) -> None:
    """Engage the kill switch: the broker refuses every new order."""
    if not reason.strip() or len(reason) > 200:
        raise _fail("kill-switch on", f"--reason {reason!r} must be 1 to 200 characters", BAD_INPUT)
    if not yes and not typer.confirm("Engage the kill switch (every new order is refused)?"):
        raise _fail("kill-switch on", "not confirmed; nothing changed", FAILED)
    with _client("kill-switch on", BrokerClient) as broker:
        state = broker.engage_kill_switch(reason, cancel_open_orders=cancel_open)
    if as_json:
        _print_json(state)
    else:
        console.print(_ks_line(state), highlight=False)


@kill_switch_app.command("off")
def ks_off(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: AsJson = False,
) -> None:
    """Release the kill switch: orders are allowed again."""
    if not yes and not typer.confirm("Release the kill switch (orders are allowed again)?"):
        raise _fail("kill-switch off", "not confirmed; nothing changed", FAILED)
    with _client("kill-switch off", BrokerClient) as broker:
        state = broker.release_kill_switch()
    if as_json:
        _print_json(state)
    else:
        console.print(_ks_line(state), highlight=False)


# ---------------------------------------------------------------- engine

engine_app = typer.Typer(
    help="The live engine: status, pause, resume, flatten.", no_args_is_help=True
)


def _engine_summary(body: dict[str, Any]) -> None:
    console.print(
        f"engine: {body.get('mode')}"
        + ("" if body.get("safety_state_known") else " (safety state not yet known)")
        + f"   open positions: {len(body.get('open_positions') or [])}"
        + f"   open intents: {body.get('open_intents')}",
        highlight=False,
    )
    strategies = body.get("strategies") or {}
    if strategies:
        _table(
            "strategies",
            ["name", "strategy", "interval", "universe"],
            [
                [n, s.get("strategy"), s.get("interval"), ",".join(s.get("universe") or [])]
                for n, s in strategies.items()
            ],
        )


def _engine_step(
    command: str, step: Callable[[EngineClient], dict[str, Any]], as_json: bool
) -> None:
    with _client(command, EngineClient) as engine:
        body = step(engine)
    if as_json:
        _print_json(body)
    else:
        _engine_summary(body)


@engine_app.command("status")
def engine_status(as_json: AsJson = False) -> None:
    """Mode, safety state, strategies and open positions."""
    _engine_step("engine status", lambda e: e.status(), as_json)


def _engine_control(action: Literal["pause", "resume", "flatten"]) -> Callable[..., None]:
    def command(as_json: AsJson = False) -> None:
        _engine_step(f"engine {action}", lambda e: e.control(action), as_json)

    return command


engine_app.command("pause", help="No new entries; exits, stops and targets keep working.")(
    _engine_control("pause")
)
engine_app.command("resume", help="Run again after a pause or a stop.")(_engine_control("resume"))
engine_app.command(
    "flatten", help="Exit every open position at market, cancel entries, then pause."
)(_engine_control("flatten"))


# ---------------------------------------------------------------- strategies

strategies_app = typer.Typer(
    help="The engine's strategy instances: list, enable, disable.", no_args_is_help=True
)


@strategies_app.command("list")
def strategies_list(as_json: AsJson = False) -> None:
    """Registered strategies and the configured instances."""
    with _client("strategies list", EngineClient) as engine:
        body = engine.strategies()
    if as_json:
        _print_json(body)
        return
    _table(
        "instances",
        ["name", "strategy", "interval", "universe"],
        [
            [i.get("name"), i.get("strategy"), i.get("interval"), ",".join(i.get("universe") or [])]
            for i in body.get("instances", [])
        ],
    )
    _table(
        "registered strategies",
        ["name", "description"],
        [[r.get("name"), r.get("description")] for r in body.get("registered", [])],
    )


def _switch_strategy(command: str, name: str, enabled: bool, as_json: bool) -> None:
    with _client(command, EngineClient) as engine:
        body = engine.set_strategy_enabled(name, enabled)
    if as_json:
        _print_json(body)
    else:
        console.print(f"{name}: {'enabled' if enabled else 'disabled'}", highlight=False)


@strategies_app.command("enable")
def strategies_enable(
    name: Annotated[str, typer.Argument(help="the instance's name (strategies list)")],
    as_json: AsJson = False,
) -> None:
    """Let a strategy instance enter positions again."""
    _switch_strategy("strategies enable", name, True, as_json)


@strategies_app.command("disable")
def strategies_disable(
    name: Annotated[str, typer.Argument(help="the instance's name (strategies list)")],
    as_json: AsJson = False,
) -> None:
    """No new entries from a strategy instance; exits, stops and targets keep working."""
    _switch_strategy("strategies disable", name, False, as_json)


# ---------------------------------------------------------------- quotes

_INSTRUMENT = re.compile(r"^(?:[A-Z]{2,4}:)?[A-Z0-9&\-_.]{1,40}$")


def quote(
    symbols: Annotated[list[str], typer.Argument(help="INFY or NSE:INFY, several allowed")],
    as_json: AsJson = False,
) -> None:
    """Last price of instruments: the last tick the broker saw, else Kite's LTP."""
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    for s in wanted:
        if not _INSTRUMENT.match(s):
            raise _fail("quote", f"{s!r} is not SYMBOL or EXCHANGE:SYMBOL", BAD_INPUT)
    with _client("quote", BrokerClient) as broker:
        body = broker.quotes(wanted)
    if as_json:
        _print_json(body)
    else:
        _table(
            "quotes",
            ["instrument", "last price", "source"],
            [
                [f"{q['exchange']}:{q['symbol']}", q["last_price"], q["source"]]
                for q in body["quotes"]
            ],
        )
        for m in body.get("missing", []):
            err_console.print(f"dalal quote: no price for {m}", highlight=False, markup=False)
    if body.get("missing"):
        raise typer.Exit(FAILED)


def register(app: typer.Typer) -> None:
    """Add the trading-day commands to the `dalal` app."""
    app.command("orders")(orders)
    app.command("order")(order)
    app.command("buy")(buy)
    app.command("sell")(sell)
    app.command("cancel")(cancel)
    app.command("modify")(modify)
    app.command("positions")(positions)
    app.command("pnl")(pnl)
    app.command("quote")(quote)
    app.add_typer(kill_switch_app, name="kill-switch")
    app.add_typer(protections_app, name="protections")
    app.add_typer(engine_app, name="engine")
    app.add_typer(strategies_app, name="strategies")
