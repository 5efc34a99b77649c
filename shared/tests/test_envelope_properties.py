"""Laws of the bus envelope (hypothesis): what is published is what is consumed, and no entry a
stream can hold makes a consumer raise anything but MessageDecodeError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_shared.bus import decode_envelope, wrap_fields
from dalal_shared.messages import (
    Envelope,
    Message,
    MessageDecodeError,
    OrderFilled,
    PlaceOrder,
    Tick,
)

symbols = st.from_regex(r"[A-Z][A-Z0-9&\-]{0,19}", fullmatch=True)
order_ids = st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True)
# prices on any grid down to 4 decimals (Kite's currency instruments), up to a crore
prices = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("10000000"), places=4, allow_nan=False
)
quantities = st.integers(min_value=1, max_value=10_000_000)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.astimezone(UTC))
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))

place_orders = st.builds(
    PlaceOrder,
    client_order_id=order_ids,
    symbol=symbols,
    side=st.sampled_from(["BUY", "SELL"]),
    quantity=quantities,
    order_type=st.sampled_from(["MARKET", "LIMIT", "SL", "SL-M"]),
    product=st.sampled_from(["CNC", "MIS", "NRML"]),
    price=st.none() | prices,
    trigger_price=st.none() | prices,
    strategy=st.none() | st.text(max_size=40),
)
fills = st.builds(
    OrderFilled,
    client_order_id=order_ids,
    broker_order_id=st.text(min_size=1, max_size=30),
    trade_id=st.text(min_size=1, max_size=30),
    symbol=symbols,
    side=st.sampled_from(["BUY", "SELL"]),
    product=st.sampled_from(["CNC", "MIS", "NRML"]),
    quantity=quantities,
    price=prices,
    filled_at=st.builds(lambda t, o: t.astimezone(timezone(o)), times, offsets),
)
ticks = st.builds(
    Tick,
    instrument_token=st.integers(min_value=0, max_value=2**32),
    symbol=symbols,
    last_price=prices,
    volume=st.integers(min_value=0, max_value=2**40),
    exchange_ts=times,
)
messages = st.one_of(place_orders, fills, ticks)


def as_redis(fields: dict[str, str]) -> dict[bytes, bytes]:
    """A stream entry as redis-py returns it: bytes keys and values."""
    return {k.encode(): v.encode() for k, v in fields.items()}


@settings(max_examples=300, deadline=None)
@given(message=messages, corr=st.none() | order_ids, source=st.sampled_from(["engine", "broker"]))
def test_what_is_published_is_what_is_consumed(message: Message, corr: str | None, source: str):
    envelope, fields = wrap_fields(message, source=source, corr=corr)
    for decoded in (decode_envelope(as_redis(fields)), Envelope.from_fields(fields)):
        assert decoded.message == message
        assert (decoded.id, decoded.corr, decoded.source) == (envelope.id, envelope.corr, source)
        assert decoded.ts == envelope.ts and decoded.ts.tzinfo is not None
    # money keeps every digit (a Decimal, never a float on the way)
    again = decode_envelope(as_redis(fields)).message
    for name in ("price", "trigger_price", "last_price"):
        if getattr(message, name, None) is not None:
            assert str(getattr(again, name)) == str(getattr(message, name))


field_names = st.sampled_from([b"type", b"v", b"id", b"ts", b"source", b"corr", b"data", b"x"])


@settings(max_examples=400, deadline=None)
@given(
    message=messages,
    damage=st.lists(st.tuples(field_names, st.binary(max_size=64)), min_size=1, max_size=3),
    drop=st.lists(field_names, max_size=2),
)
def test_any_damaged_entry_decodes_or_is_refused_cleanly(
    message: Message, damage: list[tuple[bytes, bytes]], drop: list[bytes]
):
    """Whatever bytes replace or remove fields of a valid entry, the fast path and the full
    decode agree: the same envelope, or both a MessageDecodeError (which the bus dead-letters)."""
    _, fields = wrap_fields(message, source="engine")
    raw = as_redis(fields)
    for name, value in damage:
        raw[name] = value
    for name in drop:
        raw.pop(name, None)
    outcomes = []
    for decode in (decode_envelope, Envelope.from_fields):
        try:
            outcomes.append(decode(dict(raw)).model_dump())
        except MessageDecodeError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]
