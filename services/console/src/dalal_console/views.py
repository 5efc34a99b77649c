"""What the console computes from the services' answers (pure functions, tested directly)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dalal_shared.timeutil import IST


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def market_day(engine_status: Any, now: datetime) -> date:
    """The trading day the stack lives in: the engine's market clock (kitesim's in sim mode,
    which replays another year), else today in IST."""
    if isinstance(engine_status, dict):
        clock = engine_status.get("market_clock")
        if isinstance(clock, dict) and isinstance(clock.get("now"), str):
            try:
                return datetime.fromisoformat(clock["now"]).astimezone(IST).date()
            except ValueError:
                pass
    return now.astimezone(IST).date()


def pnl_today(book: Any, trips: Any, day: date) -> dict[str, Any]:
    """Realised P&L of the round trips closed on `day` (net and gross, charges as their
    difference), unrealised P&L of what is open now, and their sum; money as decimal strings."""
    closed = []
    for trip in trips if isinstance(trips, list) else []:
        at = trip.get("closed_at") if isinstance(trip, dict) else None
        if not isinstance(at, str):
            continue
        try:
            if datetime.fromisoformat(at).astimezone(IST).date() == day:
                closed.append(trip)
        except ValueError:
            continue
    net = sum((_money(t.get("realised_pnl_net")) for t in closed), Decimal(0))
    gross = sum((_money(t.get("realised_pnl_gross")) for t in closed), Decimal(0))
    unrealised = _money(book.get("unrealised")) if isinstance(book, dict) else Decimal(0)
    return {
        "day": day.isoformat(),
        "round_trips": len(closed),
        "realised_net": str(net),
        "realised_gross": str(gross),
        "charges": str(gross - net),
        "unrealised": str(unrealised),
        "total": str(net + unrealised),
    }


def _number(value: Any) -> Decimal | None:
    """A figure as a Decimal (numbers, and money given as decimal strings); else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _metrics(job: dict[str, Any]) -> dict[str, Any]:
    """A backtest's figures in one level: the run's (bars, trades, charges) and its report's."""
    summary = job.get("summary") or {}
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    report = summary.get("report")
    if isinstance(report, dict):
        flat.update({k: v for k, v in report.items() if not isinstance(v, dict | list)})
    return flat


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two backtests side by side: each metric of either summary, both values and b - a where
    both are numbers."""
    sa, sb = _metrics(a), _metrics(b)
    rows = []
    for name in dict.fromkeys([*sa, *sb]):
        va, vb = sa.get(name), sb.get(name)
        na, nb = _number(va), _number(vb)
        diff = str(nb - na) if na is not None and nb is not None else None
        rows.append({"metric": name, "a": va, "b": vb, "b_minus_a": diff})
    return {
        "a": {"id": a.get("id"), "request": a.get("request"), "status": a.get("status")},
        "b": {"id": b.get("id"), "request": b.get("request"), "status": b.get("status")},
        "metrics": rows,
    }


def audit_trail(intent: Any, order: Any, decisions: Any, client_order_id: str) -> dict[str, Any]:
    """One order's story: the engine's intent (who asked and why), the risk decisions that
    name it, the broker's journal row with its trades and charges; missing parts say so."""
    steps: list[dict[str, Any]] = []
    mine = [
        d
        for d in (decisions if isinstance(decisions, list) else [])
        if isinstance(d, dict) and d.get("client_order_id") == client_order_id
    ]
    for d in mine:
        verdict = "approved" if d.get("approved") else f"refused ({d.get('reason')})"
        steps.append(
            {"at": d.get("at"), "who": "engine risk", "what": f"{d.get('action')} {verdict}",
             "detail": d.get("detail")}
        )  # fmt: skip
    if isinstance(intent, dict) and "error" not in intent:
        steps.append(
            {"at": intent.get("created_at"), "who": f"engine ({intent.get('strategy')})",
             "what": f"intent {intent.get('side')} {intent.get('quantity')} {intent.get('symbol')}",
             "detail": intent.get("reason") or intent.get("status")}
        )  # fmt: skip
    if isinstance(order, dict) and "error" not in order:
        steps.append(
            {"at": order.get("created_at"), "who": "broker",
             "what": f"order {order.get('order_type')} {order.get('product')}, "
                     f"Kite id {order.get('broker_order_id') or '-'}",
             "detail": order.get("status")}
        )  # fmt: skip
        for t in order.get("trades") or []:
            steps.append(
                {"at": t.get("filled_at"), "who": "exchange",
                 "what": f"fill {t.get('quantity')} @ {t.get('price')}",
                 "detail": f"trade {t.get('trade_id')}"}
            )  # fmt: skip
    found = bool(steps)
    return {
        "client_order_id": client_order_id,
        "found": found,
        "intent": intent if isinstance(intent, dict) and "error" not in intent else None,
        "order": order if isinstance(order, dict) and "error" not in order else None,
        "decisions": mine,
        "steps": steps,
    }


RECONCILE_AT = "dalal_reconcile_last_run_timestamp_seconds"
RECONCILE_BREAKS = "dalal_reconcile_breaks"


def last_reconcile(metrics_text: str, scope: str) -> dict[str, Any]:
    """When a service last completed a reconciliation and with how many breaks, read from its
    Prometheus exposition (what `dalal status` shows); `at` None when it never ran."""
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        for metric in (RECONCILE_AT, RECONCILE_BREAKS):
            if line.startswith(f'{metric}{{scope="{scope}"}} '):
                try:
                    values[metric] = float(line.rsplit(" ", 1)[1])
                except ValueError:
                    continue
    at = values.get(RECONCILE_AT)
    if not at:
        return {"scope": scope, "at": None, "breaks": None}
    return {
        "scope": scope,
        "at": datetime.fromtimestamp(at, IST).isoformat(),
        "breaks": int(values.get(RECONCILE_BREAKS, 0)),
    }
