"""Upgrading a ledger whose old outbox holds unpublished events (migration 0004, the shared
outbox): the unpublished ones are published after the upgrade, in order, each under one id
that stays the same however often it is published; published ones are not sent again. On
SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis
import sqlalchemy as sa

from dalal_portfolio.store import MIGRATIONS, VERSION_TABLE, outbox_t
from dalal_shared import db
from dalal_shared.messages import Envelope, EquitySnapshot
from dalal_shared.outbox import OutboxRelay
from dalal_shared.streams import PORTFOLIO_EVENTS


def snapshot(equity: str) -> EquitySnapshot:
    return EquitySnapshot(
        equity=Decimal(equity),
        cash=Decimal(equity),
        realised_pnl=Decimal(0),
        unrealised_pnl=Decimal(0),
        open_positions=0,
        at=datetime(2026, 12, 1, 10, tzinfo=UTC),
    )


async def test_unpublished_events_are_published_after_the_upgrade(
    database_url: str, redis_url: str
) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE, target="0003")
    old = sa.table(
        "portfolio_outbox",
        sa.column("stream"),
        sa.column("type"),
        sa.column("payload"),
        sa.column("corr"),
        sa.column("created_at"),
        sa.column("published_at"),
    )
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for equity, published in (("100", now), ("200", None), ("300", None)):
            conn.execute(
                sa.insert(old).values(
                    stream=PORTFOLIO_EVENTS,
                    type="EquitySnapshot",
                    payload=snapshot(equity).model_dump_json(),
                    corr="c1",
                    created_at=now,
                    published_at=published,
                )
            )
    db.upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await OutboxRelay(engine, outbox_t, redis).drain() == 2
        got = [Envelope.from_fields(f) for _i, f in await redis.xrange(PORTFOLIO_EVENTS)]
        assert [e.message for e in got] == [snapshot("200"), snapshot("300")]
        assert {e.corr for e in got} == {"c1"} and len({e.id for e in got}) == 2
    finally:
        await redis.aclose()
        engine.dispose()
