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
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

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


def kite_client(api_key: str, *, root: str, timeout: float) -> KiteConnect:
    """The official client, on a `KiteHttpSession`."""
    kite = KiteConnect(api_key, root=root, timeout=timeout)
    kite.reqsession = KiteHttpSession()
    return kite
