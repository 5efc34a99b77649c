"""Where the broker remembers what it decided per client_order_id (Redis hash).

The SQL order journal of the broker issue replaces this; until then a decision survives
restarts through Redis (AOF in compose and in `make run`).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from dalal_shared.messages import OrderRejected

KEY = "broker:decisions"


class DecisionStore:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def get(self, client_order_id: str) -> OrderRejected | None:
        raw = await self.redis.hget(KEY, client_order_id)
        return OrderRejected.model_validate_json(raw) if raw else None

    async def remember(self, decision: OrderRejected) -> None:
        await self.redis.hsetnx(KEY, decision.client_order_id, decision.model_dump_json())
