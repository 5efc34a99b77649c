"""Order updates from Kite's ticker WebSocket: the broker's own connection, no subscriptions.

Kite sends every change of an order placed by the user as a text message
`{"type": "order", "data": {...order...}}` on any ticker connection of that user. Only the
order-placer (the lease holder) keeps this connection; each update goes to the desk, where it
meets postbacks and polling in one deduplicated sequence. The connection comes back with
back-off after a drop or a silence (Kite sends a 1-byte heartbeat every second), and at once
after a new login (the old access token is dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

import websockets
from prometheus_client import Counter, Gauge

from dalal_broker.adapter import BrokerOrder
from dalal_broker.desk import OrderDesk
from dalal_broker.session import SessionManager
from dalal_shared.logging import get_logger

log = get_logger(__name__)

CONNECTED = Gauge(
    "dalal_broker_order_stream_connected", "1 while the ticker order-update connection is open"
)
RECONNECTS = Counter(
    "dalal_broker_order_stream_reconnects_total",
    "Ticker order-update connections ended, by reason",
    ["reason"],
)


def ticker_base(root_url: str, ticker_url: str | None = None) -> str:
    """wss://ws.kite.trade for real Kite; the REST root with a ws(s) scheme otherwise (kitesim)."""
    if ticker_url:
        return ticker_url.rstrip("/")
    u = urlparse(root_url)
    if u.hostname == "api.kite.trade":
        return "wss://ws.kite.trade"
    return urlunparse(u._replace(scheme="wss" if u.scheme == "https" else "ws")).rstrip("/")


class OrderStream:
    def __init__(
        self,
        *,
        desk: OrderDesk,
        session: SessionManager,
        api_key: str,
        base_url: str,
        silence_seconds: float = 15.0,
        max_backoff_seconds: float = 30.0,
    ):
        self.desk = desk
        self.session = session
        self.api_key = api_key
        self.base_url = base_url
        self.silence_seconds = silence_seconds
        self.max_backoff_seconds = max_backoff_seconds

    def _token(self) -> str | None:
        record = self.session.current
        return record.access_token if record is not None and record.is_valid() else None

    def url(self, access_token: str) -> str:
        query = urlencode({"api_key": self.api_key, "access_token": access_token})
        return f"{self.base_url}/?{query}"

    async def run(self) -> None:
        backoff = 0.5
        while True:
            token = self._token()
            if token is None:  # no session: wait for a login
                await asyncio.sleep(0.5)
                continue
            reason = "closed"
            try:
                async with websockets.connect(
                    self.url(token), ping_interval=None, open_timeout=10, max_size=2**22
                ) as ws:
                    CONNECTED.set(1)
                    log.info("order_stream.connected")
                    backoff = 0.5
                    reason = await self._read(ws, token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = "error"
                log.warning("order_stream.error", error=f"{type(exc).__name__}: {exc}"[:200])
            finally:
                CONNECTED.set(0)
            RECONNECTS.labels(reason).inc()
            if reason == "new_login":
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_seconds)

    async def _read(self, ws: Any, token: str) -> str:
        """Handle messages until the connection ends (its reason is returned)."""
        last = time.monotonic()
        while True:
            if self._token() != token:
                return "new_login"
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                if time.monotonic() - last > self.silence_seconds:
                    with contextlib.suppress(Exception):
                        await ws.close()
                    return "silent"
                continue
            except websockets.ConnectionClosed:
                return "closed"
            last = time.monotonic()
            if isinstance(message, str):
                await self.on_text(message)

    async def on_text(self, text: str) -> None:
        try:
            payload = json.loads(text)
        except ValueError:
            return
        if not isinstance(payload, dict) or payload.get("type") != "order":
            return
        order = payload.get("data")
        if isinstance(order, dict) and order.get("order_id"):
            try:
                await self.desk.apply_order_update(BrokerOrder.from_kite(order), "ticker")
                await self.desk.flush_outbox()
            except Exception as exc:  # one bad update must not end the connection
                log.error("order_stream.update_failed", error=repr(exc))
