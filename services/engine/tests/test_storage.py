"""The engine's storage stays off the event loop, and an order event costs a key lookup.

The engine app on a real Redis bus and a real SQLite database; every SQL statement the
database runs is recorded with the thread that ran it. While bars, fills and HTTP reads are
handled, no statement runs on the event loop's thread (they run in worker threads), and no
statement reads the intents table without a condition (no event loads every intent)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from engine_fixtures import CONFIG, announce_safe, infy_bars, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_shared.messages import Envelope, OrderFilled, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import wait_until

KEY = "engine-storage-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_sql_runs_off_the_event_loop_and_intents_are_read_by_key(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "strategies.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    r = redis.Redis.from_url(redis_url)
    announce_safe(r)
    app = build_app(settings)
    ran: list[tuple[str, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        ran.append((threading.current_thread().name, " ".join(statement.split())))

    sa.event.listen(app.state.live.store.engine, "before_cursor_execute", record)
    loop_threads: set[str] = set()

    @app.get("/_loop_thread")
    async def loop_thread() -> dict[str, str]:
        loop_threads.add(threading.current_thread().name)
        return {"thread": threading.current_thread().name}

    def orders() -> list[PlaceOrder]:
        out = [Envelope.from_fields(f).message for _id, f in r.xrange(ORDERS_COMMANDS)]
        return [m for m in out if isinstance(m, PlaceOrder)]

    def consumed(stream: str) -> bool:
        last = r.xrevrange(stream, count=1)
        return not last or any(
            g["name"] == b"engine" and g["last-delivered-id"] == last[0][0] and g["pending"] == 0
            for g in r.xinfo_groups(stream)
        )

    with TestClient(app) as client:
        client.get("/_loop_thread")
        ran.clear()  # from here on: the running service
        assert client.post("/engine/start", headers=AUTH).json()["running"]
        n = 0
        for bar in infy_bars():
            r.xadd("market.bars.day", Envelope.wrap(bar, source="data").to_fields())
            wait_until(lambda: consumed("market.bars.day"), message="bar consumed")
            for order in orders()[n:]:
                n += 1
                fill = OrderFilled(
                    client_order_id=order.client_order_id,
                    broker_order_id=f"b-{n}",
                    trade_id=f"t-{n}",
                    symbol="INFY",
                    side=order.side,
                    product="CNC",
                    quantity=order.quantity,
                    price=bar.close,
                    filled_at=bar.start + timedelta(hours=10),
                )
                r.xadd(ORDERS_EVENTS, Envelope.wrap(fill, source="broker").to_fields())
            wait_until(lambda: consumed(ORDERS_EVENTS), message="fills consumed")
        assert client.get("/engine/status").json()["open_intents"] == 0
        assert client.get("/signals").json()
    assert n >= 4  # orders went out and filled
    assert ran, "statements were recorded"
    on_loop = [sql for thread, sql in ran if thread in loop_threads]
    assert on_loop == []
    intents = [sql for _t, sql in ran if "FROM engine_intents" in sql]
    assert intents and all(" WHERE " in sql for sql in intents)
