"""The audit trail's lines: the order, fill, protection, position and risk events, with an
engine order's purpose read from its id; market data and snapshots stay out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dalal_shared import messages as m
from dalal_shared.audit import audit, audit_line
from dalal_shared.orderlegs import exit_reason, order_reason

T0 = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append((event, fields))


def test_a_fill_of_an_engine_stop_says_what_it_was_for() -> None:
    fill = m.OrderFilled(
        client_order_id="S-2501061530-3fa9c0d",
        broker_order_id="b1",
        trade_id="t1",
        symbol="INFY",
        side="SELL",
        product="CNC",
        quantity=10,
        price=Decimal("1500.05"),
        filled_at=T0,
    )
    log = Recorder()
    audit(log, fill, service="broker")
    [(event, fields)] = log.lines
    assert event == "order.filled"
    assert fields["audit"] is True and fields["service"] == "broker"
    assert (fields["client_order_id"], fields["quantity"], fields["price"]) == (
        "S-2501061530-3fa9c0d",
        10,
        "1500.05",
    )
    assert fields["purpose"] == "stop-loss"


def test_the_trail_covers_positions_and_decisions_but_not_market_data() -> None:
    closed = m.PositionClosed(
        symbol="INFY",
        product="CNC",
        realised_pnl=Decimal("250.50"),
        closed_at=T0,
        reason=exit_reason("T1-2501061530-3fa9c0d"),
    )
    line = audit_line(closed)
    assert line is not None and line[0] == "position.closed"
    assert line[1]["reason"] == "target 1 (T1-2501061530-3fa9c0d)"
    decided = m.RiskDecided(
        strategy="manual",
        symbol="INFY",
        action="ENTER",
        approved=False,
        reason="position_cap",
        decided_at=T0,
    )
    assert audit_line(decided)[0] == "risk.decided"  # type: ignore[index]
    tick = m.Tick(instrument_token=1, symbol="INFY", last_price=Decimal("1500"), exchange_ts=T0)
    assert audit_line(tick) is None


def test_only_engine_ids_have_a_purpose() -> None:
    assert order_reason("G-2501061530-3fa9c0d") == "stop at the exchange (GTT)"
    assert order_reason("P2-2501061530-3fa9c0d") == "stop at the exchange (SL-M)"
    assert order_reason("hand-1") is None
    assert order_reason("S-not-an-engine-id") is None
    assert exit_reason("hand-1") == "hand-1"
