"""Reconciliation: the journal against Kite's orders and trades; every break listed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dalal_broker.adapter import BrokerOrder, BrokerTrade
from dalal_broker.journal import OrderRow


@dataclass(frozen=True)
class Break:
    kind: str
    client_order_id: str | None
    broker_order_id: str | None
    detail: str

    def view(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "client_order_id": self.client_order_id,
            "broker_order_id": self.broker_order_id,
            "detail": self.detail,
        }


def reconcile(
    journal_orders: list[OrderRow],
    journal_trades: dict[str, int],
    kite_orders: list[BrokerOrder],
    kite_trades: list[BrokerTrade],
) -> list[Break]:
    """`journal_trades`: filled quantity per broker order id as recorded from trades."""
    breaks: list[Break] = []
    by_broker = {r.broker_order_id: r for r in journal_orders if r.broker_order_id}
    by_tag = {r.client_order_id: r for r in journal_orders}
    kite_filled: dict[str, int] = {}
    for t in kite_trades:
        kite_filled[t.order_id] = kite_filled.get(t.order_id, 0) + t.quantity
    for order in kite_orders:
        oid = order.order_id
        row = by_broker.get(oid)
        if row is None:
            tag = order.tag
            tagged = by_tag.get(tag) if tag else None
            if tagged is not None:
                breaks.append(
                    Break(
                        "unlinked_order",
                        tagged.client_order_id,
                        oid,
                        f"Kite has our tag on order {oid}; the journal says "
                        f"{tagged.status} without it",
                    )
                )
            else:
                breaks.append(
                    Break(
                        "unknown_order",
                        None,
                        oid,
                        f"order {oid} ({order.symbol} {order.side} {order.quantity}) "
                        "is not in the journal: placed by hand?",
                    )
                )
            continue
        status = order.status
        if status != row.status and status in ("COMPLETE", "CANCELLED", "REJECTED"):
            breaks.append(
                Break(
                    "status_mismatch",
                    row.client_order_id,
                    oid,
                    f"journal {row.status}, Kite {status}",
                )
            )
        if kite_filled.get(oid, 0) != journal_trades.get(oid, 0):
            breaks.append(
                Break(
                    "fill_mismatch",
                    row.client_order_id,
                    oid,
                    f"journal recorded {journal_trades.get(oid, 0)} filled from "
                    f"trades, Kite reports {kite_filled.get(oid, 0)}",
                )
            )
    kite_ids = {o.order_id for o in kite_orders}
    for row in journal_orders:
        if row.broker_order_id and row.broker_order_id not in kite_ids and not row.terminal:
            breaks.append(
                Break(
                    "missing_at_kite",
                    row.client_order_id,
                    row.broker_order_id,
                    f"journal has it {row.status}; Kite's order book does not",
                )
            )
    return breaks
