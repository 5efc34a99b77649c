"""The services behind the console, and which of their routes a console page may call.

The console forwards a page's request to the service that owns the route, presenting the API
key itself (the browser never holds it). Only the routes below are forwarded: what the pages
use, nothing that reaches past them (no Kite faults, no seed import, no cash movements).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

SERVICES = ("broker", "data", "portfolio", "engine")

# (method, service, path pattern): the whole path must match
_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "broker", r"/status|/session|/kill-switch|/orders|/orders/[\w.:-]+|/trades"),
    ("GET", "broker", r"/protections|/reconcile|/quote"),
    ("POST", "broker", r"/kill-switch/(engage|release)"),
    ("PATCH", "broker", r"/orders/[\w.:-]+"),
    ("DELETE", "broker", r"/orders/[\w.:-]+"),
    ("GET", "portfolio", r"/portfolio|/positions|/trades|/performance|/equity-curve|/reconcile"),
    ("GET", "engine", r"/engine/status|/engine/orders/[\w.:-]+|/strategies|/signals"),
    ("GET", "engine", r"/backtests|/backtests/[\w-]+|/backtests/[\w-]+/report\.(json|html)"),
    ("GET", "engine", r"/sweeps|/sweeps/[\w-]+|/sweeps/[\w-]+/report\.(json|html)"),
    ("POST", "engine", r"/engine/(start|pause|resume|flatten)|/engine/orders|/backtests|/sweeps"),
    ("POST", "engine", r"/strategies/[\w.-]+/(enable|disable)"),
    ("GET", "data", r"/feed|/coverage|/jobs"),
)
_COMPILED = [(m, s, re.compile(p, re.ASCII)) for m, s, p in _ROUTES]


def allowed(method: str, service: str, path: str) -> bool:
    """May a console page call `method path` on `service`?"""
    return any(m == method and s == service and rx.fullmatch(path) for m, s, rx in _COMPILED)


@dataclass(frozen=True)
class Answer:
    """A service's answer as the console passes it on."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Unreachable(Exception):
    def __init__(self, service: str, why: str):
        super().__init__(f"{service} is not reachable ({why})")
        self.service = service


class Upstreams:
    """One HTTP client per service, presenting the API key."""

    def __init__(self, urls: dict[str, str], api_key: str, *, timeout: float):
        headers = {"Authorization": f"Bearer {api_key}"}
        self._clients = {
            name: httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)
            for name, url in urls.items()
        }

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: bytes | None = None,
    ) -> Answer:
        client = self._clients[service]
        headers = {"content-type": "application/json"} if body else None
        try:
            resp = await client.request(method, path, params=params, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise Unreachable(service, type(exc).__name__) from None
        return Answer(
            resp.status_code, resp.headers.get("content-type", "application/json"), resp.content
        )

    async def get_json(self, service: str, path: str, **params: Any) -> Any:
        """A read whose answer the console uses itself: the JSON, or an error object."""
        try:
            answer = await self.call(service, "GET", path, params=params or None)
        except Unreachable as exc:
            return {"error": "service_unavailable", "message": str(exc)}
        try:
            data = answer.json()
        except ValueError:
            return {"error": "bad_response", "message": f"{service} {path}: not JSON"}
        if answer.status >= 400 and isinstance(data, dict):
            return {"error": data.get("error", "http_error"), "message": data.get("message", "")}
        return data
