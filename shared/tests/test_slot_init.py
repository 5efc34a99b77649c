"""`accounting.slot_init`: a frozen, slotted dataclass built through its slots' descriptors
behaves as the dataclass built it (signature, defaults, `__post_init__`, equality, hash, repr,
immutability, `replace`; the kernel's pickle), for the kernel's records and the backtester's."""

from __future__ import annotations

import inspect
import pickle
from dataclasses import FrozenInstanceError, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dalal_shared.accounting import Exit, Fill, FillEffect, InvalidFill, RoundTrip
from dalal_shared.slots import slot_init
from dalal_shared.timeutil import IST


def pair() -> tuple[type, type]:
    """One record made twice: as dataclasses makes it, and with `slot_init`."""

    def make() -> type:
        @dataclass(frozen=True, slots=True)
        class Record:
            name: str
            quantity: int
            price: Decimal = Decimal("1.5")
            tags: tuple[str, ...] = ()

            def __post_init__(self) -> None:
                if self.quantity <= 0:
                    raise ValueError("quantity must be positive")
                if self.name != self.name.upper():
                    object.__setattr__(self, "name", self.name.upper())

        return Record

    return make(), slot_init(make())


def test_a_record_is_the_same_built_either_way() -> None:
    plain, fast = pair()
    assert fast.__init__ is not plain.__init__
    assert inspect.signature(fast) == inspect.signature(plain)
    for args, kwargs in (
        (("infy", 5), {}),
        (("infy", 5, Decimal("2.25")), {}),
        ((), {"name": "tcs", "quantity": 1, "tags": ("a", "b")}),
        (("sbin",), {"quantity": 3, "price": Decimal(4)}),
    ):
        a, b = plain(*args, **kwargs), fast(*args, **kwargs)
        assert repr(a).replace(plain.__qualname__, "X") == repr(b).replace(fast.__qualname__, "X")
        assert (a.name, a.quantity, a.price, a.tags) == (b.name, b.quantity, b.price, b.tags)
        assert hash((a.name, a.quantity, a.price, a.tags)) == hash(b) == hash(fast(*args, **kwargs))
        assert b == fast(*args, **kwargs) and b != replace(b, quantity=99)
        with pytest.raises(FrozenInstanceError):
            b.quantity = 7  # type: ignore[misc]
    with pytest.raises(ValueError, match="positive"):  # __post_init__ still runs
        fast("infy", 0)
    with pytest.raises(TypeError):
        fast("infy")  # a field without a default is still required
    with pytest.raises(TypeError):
        fast("infy", 1, Decimal(1), (), "one too many")


def test_a_field_with_a_factory_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Listed:
        items: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="not a plain field"):
        slot_init(Listed)


def test_the_kernels_records_keep_their_checks() -> None:
    at = datetime(2025, 1, 6, 10, tzinfo=IST)
    fill = Fill("t1", "c1", "b1", "NSE", "INFY", "BUY", "CNC", 5, Decimal("100"), at)
    assert fill.filled_at.tzinfo is UTC and fill.filled_at == at  # kept in UTC
    assert (fill.reason, fill.charged) == (None, True)
    with pytest.raises(InvalidFill, match="quantity"):
        Fill("t1", "c1", "b1", "NSE", "INFY", "BUY", "CNC", 0, Decimal("100"), at)
    assert fill.same_trade(replace(fill, reason="entry"))
    effect = FillEffect("t1", "opened", 5, Decimal("100"), 0, Decimal(0), Decimal(0), "entry")
    ex = Exit("t2", "c2", 5, Decimal("101"), at, "x", Decimal(5), Decimal(1), Decimal(4))
    trip = RoundTrip(
        "NSE", "INFY", "CNC", "LONG", 5, Decimal(100), Decimal(101), at, at,
        Decimal(5), Decimal(1), Decimal(4), (ex,),
    )  # fmt: skip
    assert trip.source == "ledger" and trip.exits == (ex,)
    assert {effect, ex, trip}  # hashable as before
    for record in (fill, effect, ex, trip):
        assert pickle.loads(pickle.dumps(record)) == record
