"""Order admission before anything goes to Kite."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dalal_broker.orders import admit
from dalal_broker.session import KiteSession
from dalal_shared.messages import PlaceOrder

SESSION = KiteSession(user_id="AB1234", expires_at=datetime(2030, 1, 1, tzinfo=UTC))


def test_without_a_session_every_order_is_refused_with_no_session() -> None:
    order = PlaceOrder(client_order_id="b1", symbol="INFY", side="BUY", quantity=1)
    rejection = admit(order, None)
    assert rejection is not None
    assert (rejection.client_order_id, rejection.reason) == ("b1", "no_session")


@pytest.mark.parametrize(
    ("order_type", "price", "trigger", "ok"),
    [
        ("MARKET", None, None, True),
        ("LIMIT", None, None, False),
        ("LIMIT", Decimal("10"), None, True),
        ("SL", Decimal("10"), None, False),
        ("SL", Decimal("10"), Decimal("9.5"), True),
        ("SL-M", None, None, False),
        ("SL-M", None, Decimal("9.5"), True),
    ],
)
def test_price_fields_required_by_order_type(order_type, price, trigger, ok) -> None:
    order = PlaceOrder(
        client_order_id="b1",
        symbol="INFY",
        side="BUY",
        quantity=1,
        order_type=order_type,
        price=price,
        trigger_price=trigger,
    )
    rejection = admit(order, SESSION)
    assert (rejection is None) == ok
    if rejection is not None:
        assert rejection.reason == "input"
