"""Deterministic client order ids: the same signal always gets the same id, so an engine that
restarts and decides again re-emits an id the broker already knows instead of a second order.

Format (<= 20 chars, [A-Za-z0-9_-]): `<leg>-<yymmddHHMM>-<hash>`, e.g. `E-2501061530-3fa9c0d`:
the leg (E, T1, T2, X), the signal bar's start in IST, and 7-8 hex characters of
sha256(strategy instance | symbol | bar start UTC | leg) filling the rest of the 20.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from dalal_shared.timeutil import to_ist, to_utc

_VALID = re.compile(r"^[A-Za-z0-9_\-]{1,20}$")
_LEG = re.compile(r"^[A-Z][A-Z0-9]{0,2}$")


def client_order_id(strategy: str, symbol: str, bar_start: datetime, leg: str) -> str:
    if not _LEG.match(leg):
        raise ValueError(f"leg must be 1-3 capitals/digits, got {leg!r}")
    key = f"{strategy}|{symbol}|{to_utc(bar_start).isoformat()}|{leg}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    ist = to_ist(bar_start)  # yymmddHHMM (strftime is slower than this, and it is per order)
    head = f"{leg}-{ist.year % 100:02d}{ist.month:02d}{ist.day:02d}{ist.hour:02d}{ist.minute:02d}-"
    out = head + digest[: 20 - len(head)]
    assert _VALID.match(out), out
    return out
