"""`client_order_id` must give the ids it always gave (the live engine re-emits them after a
restart and the broker knows them by them): the current function against the implementation
before its bar texts were remembered, copied here, on many random inputs."""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dalal_engine.orderids import client_order_id
from dalal_shared.timeutil import IST, to_ist, to_utc

_VALID = re.compile(r"^[A-Za-z0-9_\-]{1,20}$")
_LEG = re.compile(r"^[A-Z][A-Z0-9]{0,2}$")


def old_client_order_id(strategy: str, symbol: str, bar_start: datetime, leg: str) -> str:
    """The implementation of commit 4a7fe4d, verbatim."""
    if not _LEG.match(leg):
        raise ValueError(f"leg must be 1-3 capitals/digits, got {leg!r}")
    key = f"{strategy}|{symbol}|{to_utc(bar_start).isoformat()}|{leg}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    ist = to_ist(bar_start)
    head = f"{leg}-{ist.year % 100:02d}{ist.month:02d}{ist.day:02d}{ist.hour:02d}{ist.minute:02d}-"
    out = head + digest[: 20 - len(head)]
    assert _VALID.match(out), out
    return out


ZONES = [
    UTC,
    IST,
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=9, minutes=45)),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("America/New_York"),  # DST: ambiguous and skipped wall times, fold 0 and 1
    ZoneInfo("Europe/London"),
]
LEGS = ["E", "T1", "T2", "X", "F", "P", "S1", "S12", "Z9"]
WORDS = ["bench", "swing-1", "sma_cross", "bt-swing", "ರಾಮ", "a|b", "", "M&M", "BAJAJ-AUTO"]


def _random_time(rng: random.Random) -> datetime:
    seconds = rng.randrange(0, 40 * 366 * 86_400)
    micros = rng.choice([0, rng.randrange(10**6)])
    base = datetime(1999, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    zone = rng.choice(ZONES)
    local = base.astimezone(zone)
    return local.replace(fold=rng.choice([0, 1])) if rng.random() < 0.3 else local


def _random_leg(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return rng.choice(LEGS)
    return rng.choice("ABCXYZ") + "".join(rng.choice("AZ09") for _ in range(rng.randrange(3)))


def test_same_ids_as_before_on_random_inputs() -> None:
    rng = random.Random(20250106)
    times = [_random_time(rng) for _ in range(3000)]
    for k in range(20_000):
        at = times[k % len(times)] if rng.random() < 0.5 else _random_time(rng)  # repeats too
        strategy = rng.choice(WORDS) + str(rng.randrange(100))
        symbol = rng.choice([*WORDS, "RELIANCE", "TCS", "NIFTY 50"])
        leg = _random_leg(rng)
        assert client_order_id(strategy, symbol, at, leg) == old_client_order_id(
            strategy, symbol, at, leg
        )


def test_same_ids_at_ambiguous_and_equal_instants() -> None:
    """Equal instants in different zones, and one wall time twice (fold 0 and 1) in a zone that
    leaves summer time: each id as before, whatever was asked first."""
    ny = ZoneInfo("America/New_York")
    ambiguous = datetime(2024, 11, 3, 1, 30, tzinfo=ny)
    instants = [ambiguous, ambiguous.replace(fold=1), ambiguous.replace(fold=0)]
    utc = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    instants += [utc, utc.astimezone(IST), utc.astimezone(ny), utc.astimezone(ZoneInfo("UTC"))]
    for at in instants * 2:
        assert client_order_id("s", "X", at, "E") == old_client_order_id("s", "X", at, "E")


@pytest.mark.parametrize("leg", ["", "e", "TOOLONG", "T-1", "1E"])
def test_bad_legs_still_refused(leg: str) -> None:
    at = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="leg must be"):
        client_order_id("s", "X", at, leg)


def test_a_naive_time_still_refused_every_time() -> None:
    naive = datetime(2025, 1, 6, 10, 0)
    for _ in range(2):  # not remembered after the first refusal
        with pytest.raises(ValueError, match="timezone-aware"):
            client_order_id("s", "X", naive, "E")


def test_a_bad_leg_is_refused_every_time_and_a_good_one_after_it() -> None:
    """Good legs are remembered once checked; a bad one never is."""
    at = datetime(2025, 1, 6, 10, 15, tzinfo=IST)
    for _ in range(2):
        with pytest.raises(ValueError, match="leg must be"):
            client_order_id("s", "X", at, "e")
        assert client_order_id("s", "X", at, "T2") == old_client_order_id("s", "X", at, "T2")
    with pytest.raises(TypeError):
        client_order_id("s", "X", at, 1)  # type: ignore[arg-type]
