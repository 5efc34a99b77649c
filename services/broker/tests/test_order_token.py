"""An order's rate-limit token is taken while its journal row is written, not after: the
Redis round trip of the limiter no longer waits for the row. The order still goes to Kite once,
with one token; a copy of an order journaled already sends nothing. Real kitesim through the
official client, the real Redis limiter."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from dalal_broker.config import BrokerSettings
from dalal_broker.desk import OrderDesk
from dalal_broker.journal import Journal
from dalal_broker.killswitch import KillSwitch
from dalal_broker.kite import KiteGateway
from dalal_shared import db
from dalal_shared.bus import Publisher
from dalal_shared.messages import PlaceOrder
from dalal_shared.ratelimit import RateLimiter

from .conftest import KITE_KEY, Sim


class Session:
    """A valid Kite session (the desk asks only whether it is)."""

    valid = True

    async def expire(self, reason: str) -> None:
        self.valid = False


class CountingLimiter(RateLimiter):
    """The real limiter, counting the tokens it grants."""

    granted = 0

    async def try_acquire(self, endpoint_class: str, **kw: Any) -> tuple[bool, float]:
        got = await super().try_acquire(endpoint_class, **kw)
        if got[0] and endpoint_class == "orders":
            self.granted += 1
        return got


def desk_on(tmp_path: Path, aredis: aioredis.Redis, kitesim: Sim) -> OrderDesk:
    limiter = CountingLimiter(aredis)
    gateway = KiteGateway(api_key=KITE_KEY, root_url=kitesim.root, limiter=limiter)
    gateway.set_access_token(kitesim.client().access_token)
    journal = Journal(db.make_engine(f"sqlite:///{tmp_path / 'journal.sqlite3'}"))
    journal.migrate()
    desk = OrderDesk(
        settings=BrokerSettings(enforce_market_hours=False),
        journal=journal,
        gateway=gateway,
        session=Session(),  # type: ignore[arg-type]
        kill_switch=KillSwitch(aredis),
        publisher=Publisher(aredis, source="broker"),
    )
    desk.leader = True
    return desk


def limit(coid: str) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=coid,
        symbol="INFY",
        side="BUY",
        quantity=1,
        order_type="LIMIT",
        price=Decimal("100"),
        product="CNC",
    )


async def test_the_token_is_taken_while_the_row_is_written_and_used_by_the_send(
    tmp_path: Path, aredis: aioredis.Redis, kitesim: Sim
) -> None:
    desk = desk_on(tmp_path, aredis, kitesim)
    limiter = desk.gateway.limiter  # type: ignore[attr-defined]
    journal_busy = threading.Event()
    desk.db.submit(journal_busy.wait, 60)  # the journal's thread held up
    placing = asyncio.create_task(desk.place(limit("tok-1"), read_first=False))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while limiter.granted < 1:  # the token comes while the row waits for the journal
        assert loop.time() < deadline, "the token waited for the journal's row"
        await asyncio.sleep(0.01)
    assert desk.journal.get("tok-1") is None and not placing.done()
    journal_busy.set()
    row = await asyncio.wait_for(placing, 30)
    assert row.status == "OPEN" and row.broker_order_id
    assert len(kitesim.orders_tagged("tok-1")) == 1
    assert limiter.granted == 1  # the send used that token: none taken twice
    desk.db.close()


async def test_a_copy_of_a_journaled_order_sends_nothing(
    tmp_path: Path, aredis: aioredis.Redis, kitesim: Sim
) -> None:
    desk = desk_on(tmp_path, aredis, kitesim)
    first = await desk.place(limit("tok-2"), read_first=False)
    again = await desk.place(limit("tok-2"), read_first=False)  # found by its insert
    assert again.broker_order_id == first.broker_order_id
    assert len(kitesim.orders_tagged("tok-2")) == 1
    desk.db.close()
