"""The broker's tick reader (`TickFollower._handle`): every tick after the last one seen, once,
into the guards' last prices; a tick read by both the run loop and `catch_up` counts once; an
entry that is not a tick envelope is passed over, never stops the reader."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dalal_broker.paper import TickFollower
from dalal_broker.prices import LastPrices
from dalal_shared.messages import Envelope, Tick


def tick_fields(symbol: str, price: str) -> dict[bytes, bytes]:
    tick = Tick(
        symbol=symbol,
        exchange="NSE",
        instrument_token=1,
        last_price=Decimal(price),
        exchange_ts=datetime(2026, 12, 4, 4, 0, tzinfo=UTC),
        volume=10,
    )
    return {
        k.encode(): v.encode() for k, v in Envelope.wrap(tick, source="data").to_fields().items()
    }


async def _noop() -> None:
    return None


def test_ticks_after_the_last_seen_count_once_and_bad_entries_are_passed_over() -> None:
    prices = LastPrices()
    follower = TickFollower(None, None, _noop, prices=prices)  # type: ignore[arg-type]
    follower.last_id = "100-0"
    reply = [
        (
            b"market.ticks",
            [
                (b"99-5", tick_fields("INFY", "1")),  # before the last seen: not again
                (b"100-1", tick_fields("INFY", "1500.5")),
                (b"101-0", {b"type": b"Tick", b"data": b"not json"}),  # undecodable
                (b"102-0", tick_fields("TCS", "3400")),
            ],
        )
    ]
    assert follower._handle(reply) == 0
    assert follower.last_id == "102-0"
    assert prices.get(("NSE", "INFY"), 60) == Decimal("1500.5")
    assert prices.get(("NSE", "TCS"), 60) == Decimal("3400")
    # an entry read again (the run loop and catch_up both read it): counted once only
    follower._handle([(b"market.ticks", [(b"102-0", tick_fields("TCS", "1"))])])
    assert prices.get(("NSE", "TCS"), 60) == Decimal("3400")
    assert follower.last_id == "102-0"
