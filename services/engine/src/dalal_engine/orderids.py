"""Deterministic client order ids: the same signal always gets the same id, so an engine that
restarts and decides again re-emits an id the broker already knows instead of a second order.

Format (<= 20 chars, [A-Za-z0-9_-]): `<leg>-<yymmddHHMM>-<hash>`, e.g. `E-2501061530-3fa9c0d`:
the leg (E, T1, T2, X), the signal bar's start in IST, and 7-8 hex characters of
sha256(strategy instance | symbol | bar start UTC | leg) filling the rest of the 20.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from hashlib import sha256

from dalal_shared.timeutil import to_ist, to_utc

_VALID = re.compile(r"^[A-Za-z0-9_\-]{1,20}$")
_LEG = re.compile(r"^[A-Z][A-Z0-9]{0,2}$")


def client_order_id(strategy: str, symbol: str, bar_start: datetime, leg: str) -> str:
    if leg not in _GOOD_LEGS:  # a leg seen before passed this check (there are a handful)
        if not _LEG.match(leg):
            raise ValueError(f"leg must be 1-3 capitals/digits, got {leg!r}")
        _GOOD_LEGS.add(leg)
    utc_text, ist_stamp = _bar_texts(bar_start, bar_start.utcoffset())
    digest = sha256(f"{strategy}|{symbol}|{utc_text}|{leg}".encode()).hexdigest()
    head = f"{leg}-{ist_stamp}-"
    out = head + digest[: 20 - len(head)]
    assert _VALID.match(out), out
    return out


_GOOD_LEGS: set[str] = set()


@lru_cache(maxsize=4096, typed=True)
def _bar_texts(bar_start: datetime, _offset: timedelta | None) -> tuple[str, str]:
    """The bar start's two texts in an id: its UTC ISO 8601 (hashed) and its IST `yymmddHHMM`.
    Remembered: every symbol and leg decided on one bar shares them (a backtest asks a few
    thousand times), and the time zone conversions cost more than the hash. Keyed by the
    instant, its UTC offset and its type, which fix both texts; a naive time raises in
    `to_utc`, as before, and is never remembered."""
    utc_text = to_utc(bar_start).isoformat()
    ist = to_ist(bar_start)  # yymmddHHMM (strftime is slower than this)
    stamp = f"{ist.year % 100:02d}{ist.month:02d}{ist.day:02d}{ist.hour:02d}{ist.minute:02d}"
    return utc_text, stamp
