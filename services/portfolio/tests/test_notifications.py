"""Notifications from a running portfolio (its own consumer group on a real Redis) to a local
stand-in of Telegram's Bot API and a webhook, over real HTTP: a fill says what it was for, a
burst of rejections arrives batched (fewer requests than lines, every line there), the kill
switch, an expired session and the end-of-day P&L are announced, and the bot token appears
only in the Bot API's URL path."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.messages import (
    Envelope,
    EquitySnapshot,
    KillSwitchEngaged,
    Message,
    OrderFilled,
    OrderRejected,
    SessionExpired,
)
from dalal_shared.streams import ORDERS_EVENTS, PORTFOLIO_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import bearer, free_port, wait_until

TOKEN = "123456789:AAE-not-a-real-bot-token-xyz"
T0 = datetime(2025, 3, 3, 4, 0, tzinfo=UTC)


class Receiver:
    """Telegram's `POST /bot<token>/sendMessage` and a webhook, recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                receiver.requests.append((self.path, json.loads(self.rfile.read(length))))
                body = b'{"ok": true, "result": {}}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self, path_part: str) -> list[str]:
        return [body["text"] for path, body in list(self.requests) if path_part in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def publish(redis_url: str, stream: str, messages: list[Message]) -> None:
    client = redis.Redis.from_url(redis_url)
    for m in messages:
        client.xadd(stream, Envelope.wrap(m, source="test").to_fields())
    client.close()


def test_fills_rejections_kill_switch_session_and_the_day_reach_telegram_and_the_webhook(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key="notify-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        broker_url=f"http://127.0.0.1:{free_port()}",
        bus_block_ms=50,
        telegram_bot_token=TOKEN,
        telegram_chat_id="42",
        telegram_api_url=receiver.root,
        notify_webhook_url=f"{receiver.root}/hook",
        notify_min_interval_seconds=0.3,
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, message="the writer")
        publish(
            redis_url,
            ORDERS_EVENTS,
            [
                OrderFilled(
                    client_order_id="S-2503031000-ab12cd3",
                    broker_order_id="b1",
                    trade_id="t1",
                    symbol="INFY",
                    side="SELL",
                    product="CNC",
                    quantity=10,
                    price=D("1500.05"),
                    filled_at=T0,
                ),
                *[
                    OrderRejected(client_order_id=f"rej-{i}", reason="margin", message="RMS")
                    for i in range(8)
                ],
            ],
        )
        publish(
            redis_url,
            SYSTEM_EVENTS,
            [
                KillSwitchEngaged(reason="daily loss", engaged_by="risk"),
                SessionExpired(reason="TokenException"),
            ],
        )
        publish(
            redis_url,
            PORTFOLIO_EVENTS,
            [
                EquitySnapshot(
                    equity=D("1012345.5"),
                    cash=D("500000"),
                    realised_pnl=D("12345.5"),
                    unrealised_pnl=D("0"),
                    open_positions=2,
                    at=T0,
                    session_day=date(2025, 3, 3),
                )
            ],
        )

        def telegram_lines() -> list[str]:
            return "\n".join(receiver.texts("/sendMessage")).split("\n")

        expected = 1 + 8 + 2 + 1
        wait_until(lambda: len(telegram_lines()) >= expected, message="every line at Telegram")
        lines = telegram_lines()
        assert "FILLED SELL 10 INFY @ ₹1,500.05 (stop-loss) [S-2503031000-ab12cd3]" in lines
        assert {f"REJECTED rej-{i} (margin): RMS" for i in range(8)} <= set(lines)
        assert any(line.startswith("KILL SWITCH ENGAGED by risk") for line in lines)
        assert any("KITE SESSION EXPIRED" in line for line in lines)
        assert any(line.startswith("Day 03 Mar 2025: equity ₹1,012,345.50") for line in lines)
        telegram = [(p, b) for p, b in receiver.requests if "/sendMessage" in p]
        assert len(telegram) < expected  # batched, not one request per line
        assert all(p == f"/bot{TOKEN}/sendMessage" and b["chat_id"] == "42" for p, b in telegram)
        assert all(TOKEN not in json.dumps(b) for _p, b in receiver.requests)
        wait_until(
            lambda: sum(len(b["lines"]) for p, b in receiver.requests if p == "/hook") >= expected,
            message="the webhook got them too",
        )
