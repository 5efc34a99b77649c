"""Notifications a trader reads on the phone: fills, rejections, kill-switch changes, session
expiry and the end-of-day P&L, to Telegram (a bot's `sendMessage`) and/or a generic webhook
(JSON POST).

`notification_text` turns a bus message into one short line (None: not worth a ping). A
`Notifier` sends to each configured sink from a background task: at most one request per sink
every `min_interval_seconds` (Telegram allows about one message a second per chat); lines
that arrive meanwhile are sent together in the next request (up to Telegram's 4,096
characters), so a burst of rejections becomes one message, never a flood or a 429. A failed
send is logged (the bot token masked) and retried with the next batch, a bounded number of
times. The portfolio runs it (one writer, so one notifier) on its own consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter

from dalal_shared.logging import get_logger, register_secret
from dalal_shared.messages import (
    EquitySnapshot,
    KillSwitchEngaged,
    KillSwitchReleased,
    Message,
    OrderFilled,
    OrderRejected,
    SessionExpired,
    SessionValid,
)
from dalal_shared.orderlegs import order_reason
from dalal_shared.timeutil import to_ist

log = get_logger(__name__)

SENT = Counter(
    "dalal_notifications_total", "Notification requests by sink and outcome", ["sink", "outcome"]
)
MAX_TEXT = 4096
MAX_QUEUED = 500  # lines waiting for a sink; older ones are dropped (and counted) past this


def _rupees(value: Any) -> str:
    return f"₹{float(value):,.2f}"


def notification_text(message: Message) -> str | None:
    """One line for `message`, or None when it is not worth a notification."""
    if isinstance(message, OrderFilled):
        purpose = order_reason(message.client_order_id)
        why = f" ({purpose})" if purpose else ""
        return (
            f"FILLED {message.side} {message.quantity} {message.symbol} @ "
            f"{_rupees(message.price)}{why} [{message.client_order_id}]"
        )
    if isinstance(message, OrderRejected):
        text = f": {message.message}" if message.message else ""
        return f"REJECTED {message.client_order_id} ({message.reason}){text}"[:500]
    if isinstance(message, KillSwitchEngaged):
        return f"KILL SWITCH ENGAGED by {message.engaged_by}: {message.reason}"
    if isinstance(message, KillSwitchReleased):
        return f"Kill switch released by {message.released_by}"
    if isinstance(message, SessionExpired):
        return f"KITE SESSION EXPIRED ({message.reason}): log in again (`dalal login`)"
    if isinstance(message, SessionValid):
        return f"Kite session valid until {to_ist(message.expires_at):%d %b %H:%M} IST"
    if isinstance(message, EquitySnapshot) and message.session_day is not None:
        return (
            f"Day {message.session_day:%d %b %Y}: equity {_rupees(message.equity)}, "
            f"realised {_rupees(message.realised_pnl)}, unrealised "
            f"{_rupees(message.unrealised_pnl)}, {message.open_positions} open position(s)"
        )
    return None


@dataclass(frozen=True)
class TelegramSink:
    bot_token: str
    chat_id: str
    api_base: str = "https://api.telegram.org"
    name: str = "telegram"

    def request(self, text: str) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.api_base.rstrip('/')}/bot{self.bot_token}/sendMessage",
            {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True},
        )


@dataclass(frozen=True)
class WebhookSink:
    url: str
    name: str = "webhook"

    def request(self, text: str) -> tuple[str, dict[str, Any]]:
        return self.url, {"source": "dalal", "text": text, "lines": text.split("\n")}


Sink = TelegramSink | WebhookSink


class Notifier:
    """Queues lines per sink and sends them in the background, batched and paced."""

    def __init__(
        self,
        sinks: list[Sink],
        *,
        min_interval_seconds: float = 1.1,
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
    ):
        self.sinks = sinks
        self.min_interval = min_interval_seconds
        self.max_attempts = max_attempts
        self._queues: dict[str, deque[str]] = {s.name: deque() for s in sinks}
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=timeout_seconds)
        for sink in sinks:
            if isinstance(sink, TelegramSink):
                register_secret(sink.bot_token)  # in URLs of any error or log line

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def offer(self, message: Message) -> bool:
        """Queue `message`'s line for every sink; False when it is not worth a notification."""
        text = notification_text(message)
        if text is None or not self.sinks:
            return False
        for queue in self._queues.values():
            queue.append(text)
            while len(queue) > MAX_QUEUED:
                queue.popleft()
                SENT.labels("queue", "dropped").inc()
        self._wake.set()
        return True

    def _batch(self, queue: deque[str]) -> str:
        lines: list[str] = []
        size = 0
        while queue and size + len(queue[0]) + 1 <= MAX_TEXT:
            line = queue.popleft()
            lines.append(line)
            size += len(line) + 1
        if not lines and queue:  # one line longer than the limit: cut it
            lines.append(queue.popleft()[:MAX_TEXT])
        return "\n".join(lines)

    async def _send(self, sink: Sink, text: str) -> None:
        url, body = sink.request(text)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._client.post(url, json=body)
                if response.status_code < 400:
                    SENT.labels(sink.name, "ok").inc()
                    return
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            SENT.labels(sink.name, "failed").inc()
            log.warning("notify.failed", sink=sink.name, attempt=attempt, error=error)
            await asyncio.sleep(self.min_interval * attempt)
        log.error("notify.dropped", sink=sink.name, lines=text.count("\n") + 1)

    async def run(self) -> None:
        """Send forever: whatever is queued, one request per sink, then wait the interval."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for sink in self.sinks:
                    queue = self._queues[sink.name]
                    if queue:
                        await self._send(sink, self._batch(queue))
                if any(self._queues.values()):
                    self._wake.set()  # more than one request's worth: the next after a pause
                await asyncio.sleep(self.min_interval)
        finally:
            with contextlib.suppress(Exception):
                await self._client.aclose()
