"""Every message type survives the trip through a stream entry unchanged."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from dalal_shared import messages as m
from dalal_shared.messages import Envelope, MessageDecodeError
from dalal_shared.timeutil import IST

T0 = datetime(2025, 3, 3, 9, 15, tzinfo=IST)

SAMPLES: list[m.Message] = [
    m.PlaceOrder(
        client_order_id="swg-RELI-240101-e1",
        symbol="RELIANCE",
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        price=Decimal("2450.05"),
        market_protection=Decimal("2"),
        strategy="swing",
    ),
    m.ModifyOrder(client_order_id="c1", price=Decimal("101.5"), quantity=5),
    m.CancelOrder(client_order_id="c1", reason="stop hit"),
    m.OrderAccepted(client_order_id="c1", broker_order_id="250303000000001"),
    m.OrderRejected(client_order_id="c1", reason="no_session", message="log in"),
    m.OrderUpdated(
        client_order_id="c1",
        broker_order_id="250303000000001",
        status="OPEN",
        filled_quantity=3,
        pending_quantity=7,
        average_price=Decimal("100.25"),
    ),
    m.OrderFilled(
        client_order_id="c1",
        broker_order_id="250303000000001",
        trade_id="T1",
        symbol="M&M",
        side="SELL",
        product="MIS",
        quantity=3,
        price=Decimal("1520.35"),
        filled_at=T0,
    ),
    m.OrderCancelled(client_order_id="c1", broker_order_id="1", filled_quantity=3),
    m.Tick(
        instrument_token=738561,
        symbol="RELIANCE",
        last_price=Decimal("2450.05"),
        volume=1000,
        exchange_ts=T0,
    ),
    m.Bar(
        symbol="BAJAJ-AUTO",
        interval="15minute",
        start=T0,
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        volume=10,
    ),
    m.PositionOpened(
        symbol="TCS", product="CNC", quantity=4, average_price=Decimal("3500"), opened_at=T0
    ),
    m.PositionReduced(
        symbol="TCS",
        product="CNC",
        quantity_closed=2,
        quantity_remaining=2,
        realised_pnl=Decimal("-12.3456"),
        reason="partial_exit_1",
    ),
    m.PositionClosed(
        symbol="TCS",
        product="CNC",
        realised_pnl=Decimal("100"),
        charges=Decimal("3.2"),
        closed_at=T0,
    ),
    m.EquitySnapshot(
        equity=Decimal("100000.01"),
        cash=Decimal("50000"),
        realised_pnl=Decimal("1.5"),
        unrealised_pnl=Decimal("-2.25"),
        open_positions=2,
        at=T0,
    ),
    m.RiskDecided(
        strategy="swing",
        symbol="INFY",
        action="ENTER",
        approved=False,
        reason="kill_switch",
        decided_at=T0,
    ),
    m.SessionValid(user_id="AB1234", expires_at=T0),
    m.SessionExpired(reason="TokenException"),
    m.KiteSessionRefused(
        service="data", reason="TokenException: Incorrect `api_key` or `access_token`."
    ),
    m.SessionClosed(day=date(2024, 6, 14), closed_at=datetime(2024, 6, 14, 10, 5, tzinfo=UTC)),
    m.DataStale(feed="ticker-0", last_tick_at=T0, age_seconds=12.5),
    m.KillSwitchEngaged(reason="daily loss", engaged_by="risk"),
    m.KillSwitchReleased(released_by="cli"),
    m.ReconcileCompleted(
        scope="portfolio",
        trigger="session_closed",
        breaks=2,
        kinds=("quantity_mismatch", "trade_missing_in_ledger"),
        day=date(2024, 6, 14),
        completed_at=datetime(2024, 6, 14, 10, 6, tzinfo=UTC),
    ),
    m.ProtectPosition(
        client_order_id="G-2406141005-ab12",
        symbol="RELIANCE",
        quantity=10,
        stop_price=Decimal("2850.05"),
        target_price=Decimal("3100"),
        strategy="swing",
    ),
    m.CancelProtection(client_order_id="G-2406141005-ab12", reason="exiting"),
    m.ProtectionPlaced(
        client_order_id="G-2406141005-ab12", gtt_id=105099, stop_price=Decimal("2850.05")
    ),
    m.ProtectionRemoved(
        client_order_id="G-2406141005-ab12",
        reason="triggered",
        gtt_id=105099,
        broker_order_id="240614000012345",
    ),
]


def test_a_protection_target_must_be_above_its_stop() -> None:
    with pytest.raises(ValidationError, match="target_price"):
        m.ProtectPosition(
            client_order_id="g1",
            symbol="INFY",
            quantity=1,
            stop_price=Decimal("1500"),
            target_price=Decimal("1400"),
        )


def test_every_registered_type_has_a_sample() -> None:
    assert {type(s).__name__ for s in SAMPLES} == set(m.message_types())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip_through_stream_fields(message: m.Message) -> None:
    env = Envelope.wrap(message, source="test", corr="corr-1")
    fields = env.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    # what redis-py returns: bytes keys and values
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    back = Envelope.from_fields(raw)
    assert back.message == message
    assert type(back.message) is type(message)
    assert (back.type, back.v, back.id, back.source, back.corr) == (
        type(message).__name__,
        1,
        env.id,
        "test",
        "corr-1",
    )
    assert back.ts == env.ts and back.ts.tzinfo is not None


def test_money_stays_exact() -> None:
    tick = SAMPLES[8]
    back = Envelope.from_fields(Envelope.wrap(tick, source="t").to_fields()).message
    assert back.last_price == Decimal("2450.05")
    assert isinstance(back.last_price, Decimal)


def test_envelope_ids_sort_by_creation() -> None:
    ids = [Envelope.wrap(SAMPLES[0], source="t").id for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_corr_defaults_to_the_message_id() -> None:
    env = Envelope.wrap(SAMPLES[0], source="t")
    assert env.corr == env.id


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError):
        m.Tick(
            instrument_token=1,
            symbol="X",
            last_price=Decimal(1),
            exchange_ts=datetime(2025, 1, 1, 9, 15),
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "NoSuchThing", "v": "1", "data": "{}"},
        {"v": "1", "data": "{}"},
        {"type": "Tick", "v": "x", "data": "{}"},
        {
            "type": "Tick",
            "v": "2",
            "id": "a",
            "ts": "2025-01-01T00:00:00+00:00",
            "source": "s",
            "corr": "c",
            "data": "{}",
        },
        {
            "type": "Tick",
            "v": "1",
            "id": "a",
            "ts": "2025-01-01T00:00:00+00:00",
            "source": "s",
            "corr": "c",
            "data": "{not json",
        },
        {
            "type": "Tick",
            "v": "1",
            "id": "a",
            "ts": "2025-01-01T00:00:00+00:00",
            "source": "s",
            "corr": "c",
            "data": '{"symbol": "X"}',
        },
    ],
    ids=["unknown-type", "no-type", "bad-version", "newer-version", "bad-json", "invalid"],
)
def test_bad_entries_raise_a_decode_error(fields: dict[str, str]) -> None:
    with pytest.raises(MessageDecodeError):
        Envelope.from_fields(fields)


def test_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        m.CancelOrder(client_order_id="c1", surprise=1)  # type: ignore[call-arg]


def test_utc_inside() -> None:
    env = Envelope.wrap(SAMPLES[0], source="t")
    assert datetime.fromisoformat(env.to_fields()["ts"]).utcoffset() == UTC.utcoffset(None)
