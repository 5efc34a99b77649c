"""What an engine order was for, read from its client order id (`<leg>-<yymmddHHMM>-<hash>`,
made by `dalal_engine.orderids`): the ledger and the logs say "stop-loss" instead of an id.
Plain domain code."""

from __future__ import annotations

import re

LEGS: dict[str, str] = {
    "E": "entry",
    "X": "strategy exit",
    "S": "stop-loss",
    "T1": "target 1",
    "T2": "target 2",
    "F": "flatten",
    "G": "stop at the exchange (GTT)",
    "Q": "MIS square-off",
}
_SLM = re.compile(r"^P\d{1,2}$")  # an MIS position's SL-M at the exchange: P1, P2, ...
_ENGINE_ID = re.compile(r"^(?P<leg>[A-Z][A-Z0-9]{0,2})-\d{10}-[0-9a-f]+$")


def order_reason(client_order_id: str) -> str | None:
    """The purpose of an engine order (None: not an engine id, e.g. one sent by hand)."""
    match = _ENGINE_ID.match(client_order_id)
    if match is None:
        return None
    leg = match.group("leg")
    if _SLM.match(leg):
        return "stop at the exchange (SL-M)"
    return LEGS.get(leg)


def exit_reason(client_order_id: str) -> str:
    """How the ledger names why a position was reduced or closed: the purpose and the id."""
    purpose = order_reason(client_order_id)
    return f"{purpose} ({client_order_id})" if purpose else client_order_id
