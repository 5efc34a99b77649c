"""The persistent kill switch: engaged, it refuses every new order until an authenticated
release. Kept in Redis (AOF in every deployment), so it survives restarts of any service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
from prometheus_client import Gauge

from dalal_shared.timeutil import ist_iso, utcnow

KEY = "killswitch"
ENGAGED = Gauge("dalal_kill_switch_engaged", "1 while the kill switch is engaged")


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool
    reason: str | None = None
    by: str | None = None
    at: datetime | None = None

    def view(self) -> dict[str, object]:
        return {
            "engaged": self.engaged,
            "reason": self.reason,
            "by": self.by,
            "at": ist_iso(self.at) if self.at else None,
        }


class KillSwitch:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def state(self) -> KillSwitchState:
        raw = await self.redis.get(KEY)
        if not raw:
            ENGAGED.set(0)
            return KillSwitchState(engaged=False)
        data = json.loads(raw)
        ENGAGED.set(1)
        return KillSwitchState(
            engaged=True,
            reason=data["reason"],
            by=data["by"],
            at=datetime.fromisoformat(data["at"]),
        )

    async def engage(self, reason: str, by: str) -> KillSwitchState:
        at = utcnow()
        await self.redis.set(KEY, json.dumps({"reason": reason, "by": by, "at": at.isoformat()}))
        ENGAGED.set(1)
        return KillSwitchState(True, reason, by, at)

    async def release(self) -> None:
        await self.redis.delete(KEY)
        ENGAGED.set(0)
