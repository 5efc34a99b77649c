"""The bus's fast paths (issue 20) give exactly what the full envelope path gives.

`decode_envelope` skips the envelope's own constructor for known types, and `wrap_fields`
builds the envelope and its fields in one step; a service must not be able to tell either
from `Envelope.from_fields` / `Envelope.wrap` + `to_fields`, for good entries and bad ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, Histogram

from dalal_shared import ids
from dalal_shared.bus import decode_envelope, decode_flat, observe_many, wrap_fields
from dalal_shared.messages import MAX_FIELD_BYTES, Envelope, MessageDecodeError, PlaceOrder, Tick

IST = timezone(timedelta(hours=5, minutes=30))


def _tick(price: str = "2500.5") -> Tick:
    return Tick(
        instrument_token=738561,
        symbol="RELIANCE",
        last_price=Decimal(price),
        volume=10,
        exchange_ts=datetime(2026, 1, 5, 9, 15, tzinfo=IST),
    )


def _raw(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_wrap_fields_equals_wrap_and_to_fields() -> None:
    message = _tick()
    envelope, fields = wrap_fields(message, source="data", corr="c-1")
    reference = Envelope.wrap(message, source="data", corr="c-1")
    assert envelope.message == message and envelope.corr == "c-1" and envelope.source == "data"
    assert (envelope.type, envelope.v) == (reference.type, reference.v)
    assert fields == envelope.to_fields()
    assert Envelope.from_fields(fields) == envelope
    own, _ = wrap_fields(message, source="data")
    assert own.corr == own.id  # a message without a correlation id starts its own chain


def test_decode_envelope_equals_from_fields_on_the_fast_path() -> None:
    for message in (
        _tick(),
        _tick("1.05"),
        PlaceOrder(client_order_id="o-1", symbol="TCS", side="BUY", quantity=3),
    ):
        _, fields = wrap_fields(message, source="engine", corr="k")
        raw = _raw(fields)
        first, second = decode_envelope(raw), decode_envelope(raw)  # second: the fast path
        expected = Envelope.from_fields(raw)
        assert first == expected and second == expected
        assert second.model_dump() == expected.model_dump()
        assert second.model_dump_json() == expected.model_dump_json()
        assert second.model_fields_set == expected.model_fields_set


@pytest.mark.parametrize(
    "change",
    [
        {b"data": b'{"symbol": "RELIANCE"}'},  # fails the message model
        {b"data": b"\xff\xfe"},  # not UTF-8
        {b"data": b"x" * (MAX_FIELD_BYTES + 1)},  # oversized
        {b"ts": b"2026-01-05T09:15:00"},  # naive time
        {b"ts": b"yesterday"},
        {b"corr": b"\xc3"},  # not UTF-8
        {b"v": b"99"},  # newer than we understand
        {b"extra": b"1"},  # an eighth field goes through the full path (which ignores it)
        {b"extra": b"\xff"},  # ... and refuses it when it is not UTF-8
    ],
)
def test_an_odd_entry_of_a_known_type_gets_what_from_fields_gives(
    change: dict[bytes, bytes],
) -> None:
    _, fields = wrap_fields(_tick(), source="data")
    raw = _raw(fields)
    decode_envelope(raw)  # the type is known now
    odd = {**raw, **change}

    def outcome(decode: Callable[[dict[bytes, bytes]], Envelope]) -> object:
        try:
            return decode(odd)
        except MessageDecodeError as exc:
            return ("error", str(exc))

    assert outcome(decode_envelope) == outcome(Envelope.from_fields)
    if b"extra" not in change:
        assert isinstance(outcome(decode_envelope), tuple)  # refused, as before


def _flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """An entry's fields as Redis sends them (name, value, ...)."""
    return [part for pair in fields.items() for part in pair]


@pytest.mark.parametrize(
    "change",
    [
        {},
        {b"data": b'{"symbol": "RELIANCE"}'},
        {b"data": b"\xff\xfe"},
        {b"ts": b"2026-01-05T09:15:00"},
        {b"v": b"99"},
        {b"extra": b"1"},
        {b"extra": b"\xff"},
    ],
)
@pytest.mark.parametrize("order", ["published", "reversed"])
def test_decode_flat_equals_decode_of_the_mapping(change: dict[bytes, bytes], order: str) -> None:
    """Redis's flat field list decoded by position gives what the mapping gives, in the
    publishers' field order and in any other (then read by name)."""
    _, fields = wrap_fields(_tick(), source="data", corr="k-1")
    decode_envelope(_raw(fields))  # the type is known now
    odd = {**_raw(fields), **change}
    if order == "reversed":
        odd = dict(reversed(list(odd.items())))

    def outcome(decode: Callable[[object], Envelope], value: object) -> object:
        try:
            envelope = decode(value)
        except MessageDecodeError as exc:
            return ("error", str(exc))
        return envelope.model_dump(), envelope.model_fields_set

    assert outcome(decode_flat, _flat(odd)) == outcome(Envelope.from_fields, odd)  # type: ignore[arg-type]
    if not change:
        assert decode_flat(_flat(odd)).message == _tick()


def test_decode_flat_refuses_a_list_that_is_not_an_entry() -> None:
    with pytest.raises(MessageDecodeError):
        decode_flat([b"type", b"Tick", b"v"])
    with pytest.raises(MessageDecodeError):  # seven things that are not a mapping
        decode_envelope([b"type"] * 7)  # type: ignore[arg-type]


def test_str_fields_still_decode() -> None:
    _, fields = wrap_fields(_tick(), source="data")
    assert decode_envelope(fields) == Envelope.from_fields(fields)


def test_observe_many_equals_observe_per_value() -> None:
    buckets = (0.001, 0.01, 0.1, 1.0)
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", ["t"], buckets=buckets, registry=one).labels("a")
    h2 = Histogram("h", "h", ["t"], buckets=buckets, registry=many).labels("a")
    values = [0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 3.0, 0.0]
    rng = random.Random(7)  # and a batch of many, in no order, some exactly on a bound
    values += [rng.choice([rng.uniform(0, 2), rng.choice(buckets)]) for _ in range(2_000)]
    for v in values:
        h1.observe(v)
    observe_many(h2, values[:8])
    observe_many(h2, values[8:])

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    # the same counts in the same buckets; the sum the same but for its last bits (added in
    # another order)
    exact = [s for s in samples(one) if not s[0].endswith("_sum")]
    assert exact == [s for s in samples(many) if not s[0].endswith("_sum")]
    sums = [s[2] for s in samples(one) if s[0].endswith("_sum")]
    assert [s[2] for s in samples(many) if s[0].endswith("_sum")] == pytest.approx(sums, rel=1e-12)


def test_wrap_fields_time_is_utc_and_aware() -> None:
    envelope, fields = wrap_fields(_tick(), source="data")
    assert envelope.ts.tzinfo is not None and envelope.ts.utcoffset() == timedelta(0)
    assert datetime.fromisoformat(fields["ts"]).tzinfo is not None
    assert abs(datetime.now(UTC) - envelope.ts) < timedelta(minutes=5)


def test_new_ids_are_spelled_as_before() -> None:
    rng = random.Random(20)
    cases = [(0, 0), ((1 << 48) - 1, (1 << 80) - 1)]
    cases += [(rng.getrandbits(48), rng.getrandbits(80)) for _ in range(2000)]
    for ms, rand in cases:
        assert ids._ulid(ms, rand) == ids._b32(ms, 10) + ids._b32(rand, 16)
    made = [ids.new_id() for _ in range(1000)]
    assert made == sorted(made) and len(set(made)) == len(made)
