"""The HTTP session under the official `kiteconnect` client (every service's `KiteConnect`).

`requests` looks at the process environment on every call made with its default session: the
proxy variables (`HTTPS_PROXY`, `NO_PROXY`... read and matched against the host each time), the
CA bundle variables (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) and the user's `.netrc` file (a
file lookup per call). For a client that sends every call to one host that is a fifth of its
CPU per call (~0.9 -> ~0.7 ms a `place_order` against kitesim), paid while a minute's orders
wait for each other's turn on the GIL. `KiteHttpSession` reads the proxies and the CA bundle
for a host once, the first time it is called, and then as `requests` would have read them
(the environment of a running service does not change). `.netrc` it does not read at all: a
`.netrc` entry for Kite's host would make `requests` replace Kite's `Authorization: token ...`
header with Basic credentials, so the client never wants it. (A redirect, which Kite's API
does not answer with, would go without the environment's proxies.)

`DalalKite` is the official client with two methods faster, which turn Kite's times into
`datetime`s with `dateutil`'s general parser (~45-58 us each): `_format_response` (the
timestamps of every order and trade listed) and `_format_historical` (every candle's time). The
broker reads the day's whole order book and trade book every 2 s while an order is live (and
the trade book at each sweep): 300 orders and their trades were ~70 ms of CPU per poll, holding
the GIL while the next minute's orders waited; Kite allows 3,000 orders a day. The data
service's backfill asks for up to 60 days of minute candles a call (~22,500: ~1 s of parsing).
Kite's own shapes (`YYYY-MM-DD HH:MM:SS`, and `YYYY-MM-DDTHH:MM:SS+HHMM` for candles) are read
with `datetime.fromisoformat` (~1 us), to the same `datetime` (a candle's zone the same
`dateutil` `tzoffset`); anything else still goes through `dateutil`, as the official client does.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import dateutil.parser
import dateutil.tz
import requests
from kiteconnect import KiteConnect
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

_Environment = tuple[dict[str, str], str | None]  # proxies, CA bundle


class KiteHttpSession(requests.Session):
    """A `requests.Session` that takes its proxies and CA bundle from the environment once per
    host (and per `no_proxy` a call passes), and never reads `.netrc`."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # no per-call environment or .netrc reads: done below, once
        self._environment: dict[tuple[str, str | None], _Environment] = {}

    def environment(self, url: str, no_proxy: str | None = None) -> _Environment:
        """The proxies `requests` would take from the environment for `url`'s host, and the CA
        bundle it would take (None: its default), read the first time for each host."""
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", no_proxy)
        known = self._environment.get(key)
        if known is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            known = (get_environ_proxies(url, no_proxy=no_proxy), bundle or None)
            self._environment[key] = known
        return known

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        """`requests.Session.merge_environment_settings` with `trust_env` on, its environment
        reads taken from `environment` (the caller's `proxies` are not changed in place)."""
        proxies = dict(proxies) if proxies is not None else {}
        env_proxies, bundle = self.environment(url, proxies.get("no_proxy"))
        for name, value in env_proxies.items():
            proxies.setdefault(name, value)
        if (verify is True or verify is None) and bundle:
            verify = bundle
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


# the fields `KiteConnect._format_response` parses (kiteconnect 5.x), in its order
_TIME_FIELDS = (
    "order_timestamp",
    "exchange_timestamp",
    "created",
    "last_instalment",
    "fill_timestamp",
    "timestamp",
    "last_trade_time",
)
_DIGITS = frozenset("0123456789")


def _date_and_time(text: str, between: str) -> bool:
    """Whether `text` opens with `YYYY-MM-DD`, `between`, `HH:MM:SS` in ASCII digits."""
    return (
        len(text) >= 19
        and text[4] == text[7] == "-"
        and text[10] == between
        and text[13] == text[16] == ":"
        and _DIGITS.issuperset(text[0:4] + text[5:7] + text[8:10])
        and _DIGITS.issuperset(text[11:13] + text[14:16] + text[17:19])
    )


def parse_kite_time(text: str) -> datetime:
    """What `dateutil.parser.parse` makes of a 19-character Kite timestamp: Kite's own shape
    (`2021-05-31 09:18:57`) through `datetime.fromisoformat` (the same naive `datetime`, 50
    times faster), anything else through `dateutil` itself (its result, or its error)."""
    if len(text) == 19 and _date_and_time(text, " "):
        try:
            return datetime.fromisoformat(text)
        except ValueError:  # a day or an hour out of range: dateutil's own error, below
            pass
    parsed: datetime = dateutil.parser.parse(text)
    return parsed


@functools.cache
def _zone(offset: int) -> Any:
    """`dateutil`'s zone for a numeric offset (seconds east of UTC), made once per offset."""
    return dateutil.tz.tzoffset(None, offset)


def parse_candle_time(text: str) -> datetime:
    """What `dateutil.parser.parse` makes of a candle's time: Kite's shape
    (`2017-12-15T09:15:00+0530`, a non-zero offset) through `datetime.fromisoformat`, in the
    same `tzoffset(None, seconds)` zone `dateutil` gives it; anything else through `dateutil`."""
    if (
        len(text) == 24
        and _date_and_time(text, "T")
        and text[19] in "+-"
        and _DIGITS.issuperset(text[20:24])
    ):
        seconds = int(text[20:22]) * 3600 + int(text[22:24]) * 60
        if 0 < seconds < 86_400:  # dateutil gives +0000 its UTC zone: left to it
            try:
                local = datetime.fromisoformat(text[:19])
            except ValueError:
                pass
            else:
                return local.replace(tzinfo=_zone(seconds if text[19] == "+" else -seconds))
    parsed: datetime = dateutil.parser.parse(text)
    return parsed


class DalalKite(KiteConnect):  # type: ignore[misc]  # kiteconnect has no types
    """The official client, its listed timestamps and candles' times parsed as it parses them,
    faster."""

    def _format_historical(self, data: Any) -> list[dict[str, Any]]:
        records = []
        for candle in data["candles"]:
            record = {
                "date": parse_candle_time(candle[0]),
                "open": candle[1],
                "high": candle[2],
                "low": candle[3],
                "close": candle[4],
                "volume": candle[5],
            }
            if len(candle) == 7:
                record["oi"] = candle[6]
            records.append(record)
        return records

    def _format_response(self, data: Any) -> Any:
        if type(data) is list:
            items = data
        elif type(data) is dict:
            items = [data]
        else:  # as the official client has it (it fails there)
            return super()._format_response(data)
        for item in items:
            for name in _TIME_FIELDS:
                value = item.get(name)
                if value and len(value) == 19:
                    item[name] = parse_kite_time(value)
        return items[0] if type(data) is dict else items


def kite_client(api_key: str, *, root: str, timeout: float) -> KiteConnect:
    """The official client (`DalalKite`), on a `KiteHttpSession`."""
    kite = DalalKite(api_key, root=root, timeout=timeout)
    kite.reqsession = KiteHttpSession()
    return kite
