"""Upgrading a journal whose outbox holds unpublished events (migration 0004, the shared
outbox schema): every event is still published after the upgrade, in order, under the
envelope id it was written with. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import redis.asyncio as aioredis
import sqlalchemy as sa

from dalal_broker.journal import MIGRATIONS, VERSION_TABLE, outbox_t
from dalal_shared import db, outbox
from dalal_shared.messages import Envelope, KillSwitchEngaged
from dalal_shared.outbox import OutboxRelay
from dalal_shared.streams import ORDERS_EVENTS


async def test_unpublished_events_survive_the_upgrade_with_their_ids(
    database_url: str, redis_url: str
) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE, target="0003")
    old = sa.table("broker_outbox", sa.column("seq"), sa.column("stream"), sa.column("fields"))
    written = [
        Envelope.wrap(KillSwitchEngaged(reason=r, engaged_by="test"), source="broker")
        for r in ("first", "second")
    ]
    with engine.begin() as conn:
        for env in written:
            conn.execute(
                sa.insert(old).values(stream=ORDERS_EVENTS, fields=json.dumps(env.to_fields()))
            )
    db.upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        relay = OutboxRelay(engine, outbox_t, redis)
        assert await relay.drain() == 2
        got = [Envelope.from_fields(f) for _i, f in await redis.xrange(ORDERS_EVENTS)]
        assert [e.id for e in got] == [e.id for e in written]
        assert [e.message for e in got] == [e.message for e in written]
        # new rows after the upgrade take the next places (the sequence moved on)
        with engine.begin() as conn:
            outbox.add(conn, outbox_t, ORDERS_EVENTS, written[0].message, source="broker")
        assert await relay.drain() == 1
    finally:
        await redis.aclose()
        engine.dispose()
