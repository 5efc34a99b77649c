"""Orders sent by hand through the engine (`LiveEngine.submit_manual`, the route behind
`POST /engine/orders`): checked by the risk manager, stored as durable intents of strategy
`manual` (the same outbox as a strategy's orders), moved along by order events, kept across a
restart. A real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from engine_fixtures import KNOWN

from dalal_engine.live import LiveEngine, RiskRefused
from dalal_engine.risk import MANUAL
from dalal_engine.store import EngineStore
from dalal_shared.errors import ConflictError
from dalal_shared.messages import (
    KillSwitchEngaged,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    RiskDecided,
)

ORDER = PlaceOrder(client_order_id="m1", symbol="INFY", side="BUY", quantity=10)
PRICE = 1500.0


def engine(tmp_path: Path, *, known: tuple[str, ...] = KNOWN) -> LiveEngine:
    return LiveEngine(
        [],
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=known,
    )


def fill(coid: str, trade_id: str, qty: int, side: str = "BUY") -> OrderFilled:
    return OrderFilled(
        client_order_id=coid,
        broker_order_id="b1",
        trade_id=trade_id,
        symbol="INFY",
        side=side,
        product="CNC",
        quantity=qty,
        price=Decimal("1500"),
        filled_at=datetime(2025, 1, 1, 4, 0, tzinfo=UTC),
    )


def unpublished(live: LiveEngine) -> list[str]:
    return [c.client_order_id for c in live.store.unpublished()]


def decisions(live: LiveEngine) -> list[RiskDecided]:
    """The RiskDecided events waiting in the engine's outbox."""
    return [m for m in live.store.outbox_messages() if isinstance(m, RiskDecided)]


def test_an_order_is_a_durable_intent_in_the_outbox_and_a_reused_id_is_refused(
    tmp_path: Path,
) -> None:
    live = engine(tmp_path)
    intent, created = live.submit_manual(ORDER, PRICE)
    assert created and (intent.strategy, intent.status) == (MANUAL, "SUBMITTED")
    assert unpublished(live) == ["m1"]
    [decision] = decisions(live)
    assert (decision.strategy, decision.approved, decision.quantity) == (MANUAL, True, 10)
    again, created_again = live.submit_manual(ORDER, PRICE)
    assert not created_again and again.command == ORDER
    with pytest.raises(ConflictError):
        live.submit_manual(ORDER.model_copy(update={"quantity": 11}), PRICE)
    # a restarted engine knows it (SQL, not memory)
    assert engine(tmp_path).store.intent("m1") is not None


def test_a_huge_market_order_is_refused_and_never_stored(tmp_path: Path) -> None:
    live = engine(tmp_path)
    huge = ORDER.model_copy(update={"client_order_id": "huge", "quantity": 10_000_000})
    with pytest.raises(RiskRefused) as refused:
        live.submit_manual(huge, PRICE)
    assert refused.value.reason == "position_cap" and refused.value.status_code == 422
    assert live.store.intent("huge") is None and unpublished(live) == []
    [decision] = decisions(live)
    assert (decision.approved, decision.reason) == (False, "position_cap")
    assert live.store.decisions(5)[0]["client_order_id"] == "huge"
    # over the cash (within the position cap of a larger equity)
    live.equity, live.cash = 10_000_000.0, 1_000.0
    with pytest.raises(RiskRefused) as poor:
        live.submit_manual(ORDER, PRICE)
    assert poor.value.reason == "insufficient_cash"
    # nothing to value a MARKET order at
    with pytest.raises(RiskRefused) as unpriced:
        live.submit_manual(ORDER, 0.0)
    assert unpriced.value.reason == "no_reference_price"


def test_refused_before_the_safety_state_is_known_and_under_the_kill_switch(
    tmp_path: Path,
) -> None:
    with pytest.raises(RiskRefused) as unknown:
        engine(tmp_path, known=()).submit_manual(ORDER, PRICE)
    assert unknown.value.reason == "safety_state_unknown"
    live = engine(tmp_path)
    live.on_system_event(KillSwitchEngaged(reason="ops", engaged_by="test"))
    with pytest.raises(RiskRefused) as killed:
        live.submit_manual(ORDER, PRICE)
    assert killed.value.reason == "kill_switch"
    assert live.store.intent("m1") is None  # a refused order may be sent again later


def test_order_events_move_the_intent_and_fills_count_once(tmp_path: Path) -> None:
    live = engine(tmp_path)
    live.submit_manual(ORDER, PRICE)
    live.on_order_event(OrderAccepted(client_order_id="m1", broker_order_id="b1"))
    assert live.store.intent("m1").status == "OPEN"
    for event in (fill("m1", "t1", 4), fill("m1", "t1", 4), fill("m1", "t2", 6)):
        live.on_order_event(event)
    intent = live.store.intent("m1")
    assert (intent.status, intent.filled_quantity) == ("COMPLETE", 10)
    assert live.open_positions() == [
        {"strategy": MANUAL, "symbol": "INFY", "quantity": 10, "average_price": "1500.0000"}
    ]
    # a hand-sent position has no exits to strand: stop() is allowed
    live.stop()
    # selling what the manual book holds is an exit (allowed without a price)
    sell = PlaceOrder(client_order_id="m2", symbol="INFY", side="SELL", quantity=10)
    exit_intent, _ = live.submit_manual(sell, 0.0)
    assert exit_intent.status == "SUBMITTED"
    assert decisions(live)[-1].action == "EXIT"


def test_a_rejection_and_a_cancel_keep_their_reason(tmp_path: Path) -> None:
    live = engine(tmp_path)
    live.submit_manual(ORDER, PRICE)
    live.on_order_event(OrderRejected(client_order_id="m1", reason="no_session"))
    intent = live.store.intent("m1")
    assert (intent.status, intent.reason) == ("REJECTED", "no_session")
    other = ORDER.model_copy(update={"client_order_id": "m3"})
    live.submit_manual(other, PRICE)
    live.on_order_event(fill("m3", "t9", 3))
    live.on_order_event(OrderCancelled(client_order_id="m3", filled_quantity=3, reason="user"))
    cancelled = live.store.intent("m3")
    assert (cancelled.status, cancelled.filled_quantity, cancelled.reason) == (
        "CANCELLED",
        3,
        "user",
    )


def test_an_unsent_order_never_goes_out_later_unless_sent_again(tmp_path: Path) -> None:
    live = engine(tmp_path)
    live.submit_manual(ORDER, PRICE)
    live.unsent("m1")  # the bus was down: the caller got a 503
    stored = live.store.intent("m1")
    assert (stored.status, stored.reason) == ("REJECTED", "bus_unavailable")
    assert unpublished(live) == []
    revived = live.revive(stored)  # the same request again
    assert revived.status == "SUBMITTED" and unpublished(live) == ["m1"]
    # events of orders nobody here sent are ignored
    assert live.on_order_event(OrderRejected(client_order_id="other", reason="x")) == []
