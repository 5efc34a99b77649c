"""A dead-lettered order command is never silent: a PlaceOrder the journal does not hold becomes a
REJECTED row and one OrderRejected `dead_lettered`; an order already journaled is left alone;
replaying the command adds nothing. Real Redis (commands held by a consumer that "died"), the
broker as a process, kitesim behind it."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from dalal_shared.messages import CancelOrder, Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until

from .conftest import Broker, Sim, events, metric
from .test_orders_with_kitesim import limit_buy

pytestmark = pytest.mark.slow

GROUP = "broker"


def held_by_a_dead_consumer(url: str, *messages: Any, deliveries: int = 3) -> list[dict[str, str]]:
    """Append commands and deliver each `deliveries` times to a consumer that never acks (as
    if it was killed each time), in one transaction: the live broker cannot read them first."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        fields = [Envelope.wrap(m, source="engine").to_fields() for m in messages]
        with client.pipeline(transaction=True) as pipe:
            for f in fields:
                pipe.xadd(ORDERS_COMMANDS, f)
            pipe.xreadgroup(GROUP, "killed", {ORDERS_COMMANDS: ">"}, count=len(fields))
            results = pipe.execute()
        ids = results[: len(fields)]
        for _ in range(deliveries - 1):
            client.xclaim(ORDERS_COMMANDS, GROUP, "killed", 0, ids)
        return fields
    finally:
        client.close()


def test_dead_lettered_commands_are_journaled_and_reported_once(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker: Broker = start_broker(DALAL_BUS_MAX_CRASH_DELIVERIES="2", DALAL_BUS_CLAIM_IDLE_MS="100")
    broker.login(kitesim)
    placed = broker.post("/orders", limit_buy("dl-open", symbol="TCS", qty=1, price="1"))
    assert placed.json()["status"] == "OPEN", placed.text
    wait_until(  # the broker's group exists (its consumer reads the stream)
        lambda: any(
            g["name"] == GROUP
            for g in redis.Redis.from_url(redis_url, decode_responses=True).xinfo_groups(
                ORDERS_COMMANDS
            )
        ),
        message="the broker's consumer group",
    )

    fields = held_by_a_dead_consumer(
        redis_url,
        PlaceOrder.model_validate(limit_buy("dl-new", symbol="TCS", qty=1, price="1")),
        PlaceOrder.model_validate(limit_buy("dl-open", symbol="TCS", qty=1, price="1")),
        CancelOrder(client_order_id="dl-open"),
    )

    row = wait_until(
        lambda: (o := broker.order("dl-new")).get("status") == "REJECTED" and o,
        timeout=60,
        message="the dead-lettered PlaceOrder journaled",
    )
    assert row["reason"] == "dead_lettered"
    [rejected] = [e.message for e in events(redis_url, coid="dl-new")]
    assert (type(rejected).__name__, rejected.reason) == ("OrderRejected", "dead_lettered")
    wait_until(
        lambda: (
            metric(
                broker,
                "dalal_broker_commands_dead_lettered_total",
                type="CancelOrder",
                outcome="journaled",
            )
            == 1
        ),
        timeout=60,
        message="the dead-lettered cancel counted",
    )
    dead = "dalal_broker_commands_dead_lettered_total"
    assert metric(broker, dead, type="PlaceOrder", outcome="rejected") == 1
    assert metric(broker, dead, type="PlaceOrder", outcome="journaled") == 1
    # the order that was placed stays placed: no rejection for it
    assert broker.order("dl-open")["status"] == "OPEN"
    assert "OrderRejected" not in [e.type for e in events(redis_url, coid="dl-open")]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.xlen(f"dlq.{ORDERS_COMMANDS}") == 3

        # replaying the dead-lettered PlaceOrder (same envelope) adds nothing; a fresh order
        # sent after it shows the replay was handled
        client.xadd(ORDERS_COMMANDS, fields[0])
        after = Envelope.wrap(
            PlaceOrder.model_validate(limit_buy("dl-after", symbol="TCS", qty=1, price="1")),
            source="engine",
        )
        client.xadd(ORDERS_COMMANDS, after.to_fields())
    finally:
        client.close()
    wait_until(lambda: broker.order("dl-after").get("status") == "OPEN", message="dl-after placed")
    assert broker.order("dl-new")["status"] == "REJECTED"
    assert len(events(redis_url, coid="dl-new")) == 1
    assert kitesim.orders_tagged("dl-new") == []
    assert len(kitesim.orders_tagged("dl-open")) == 1
    assert metric(broker, dead, type="PlaceOrder", outcome="rejected") == 1
