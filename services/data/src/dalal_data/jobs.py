"""Backfill jobs: a universe of symbols fetched by the data-worker, with progress per symbol and
an ETA kept in Redis where the API (and `dalal data backfill`) read it.

`JobStore` is the Redis edge; `progress` is the plain arithmetic of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dalal_shared.errors import PermanentError
from dalal_shared.ids import new_id
from dalal_shared.messages import Exchange, Interval

JOB_TTL_SECONDS = 7 * 24 * 3600
JOBS_INDEX = "data:backfill:jobs"
RUNS_KEY = "data:jobs:runs"  # hash: scheduled job name -> its last run (JSON)

BACKFILL_SYMBOLS = Counter(
    "dalal_data_backfill_symbols_finished_total",
    "Backfill symbols finished, by outcome",
    ["outcome"],
)


async def record_run(redis: aioredis.Redis, job: str, outcome: dict[str, Any]) -> None:
    """Keep the last run of a scheduled job where `GET /jobs` shows it."""
    await redis.hset(RUNS_KEY, job, json.dumps({"finished_at": time.time(), **outcome}))


async def last_runs(redis: aioredis.Redis) -> dict[str, dict[str, Any]]:
    raw: Any = await redis.hgetall(RUNS_KEY)
    return {k.decode(): json.loads(v) for k, v in raw.items()}


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exchange: Exchange = "NSE"
    symbols: list[str] = Field(min_length=1, max_length=5000)
    interval: Interval = "day"
    from_: str = Field(alias="from", description="yyyy-mm-dd (IST)")
    to: str | None = Field(None, description="yyyy-mm-dd (IST); default today")


class BadBackfill(PermanentError):
    code = "bad_backfill"


def progress(symbols: dict[str, dict[str, Any]], now: float) -> dict[str, Any]:
    """Totals and an ETA from per-symbol states (`state`, `started`, `finished`)."""
    total = len(symbols)
    done = sum(1 for s in symbols.values() if s.get("state") in ("done", "failed"))
    failed = sum(1 for s in symbols.values() if s.get("state") == "failed")
    starts = [s["started"] for s in symbols.values() if s.get("started")]
    eta: float | None = None
    if done == total:
        eta = 0.0
    elif done and starts:
        elapsed = max(now - min(starts), 1e-6)
        eta = (total - done) * elapsed / done
    return {
        "total": total,
        "done": done,
        "failed": failed,
        "fraction": done / total if total else 1.0,
        "eta_seconds": eta,
        "state": "finished" if done == total else "running" if starts else "queued",
    }


Enqueue = Callable[[str, dict[str, Any]], None]


class JobStore:
    def __init__(self, redis: aioredis.Redis, enqueue: Enqueue | None = None):
        self.redis = redis
        self.enqueue = enqueue

    @staticmethod
    def _key(job_id: str) -> str:
        return f"data:backfill:{job_id}"

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            req = BackfillRequest.model_validate(body)
        except ValidationError as exc:
            raise BadBackfill(f"bad backfill request: {exc.errors()[0]['msg']}") from None
        job_id = new_id()
        key = self._key(job_id)
        created = time.time()
        meta = {
            "exchange": req.exchange,
            "interval": req.interval,
            "from": req.from_,
            "to": req.to,
            "created": created,
        }
        symbols = list(dict.fromkeys(s.upper() for s in req.symbols))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "_meta", json.dumps(meta))
            for sym in symbols:
                pipe.hset(key, f"s:{sym}", json.dumps({"state": "queued"}))
            pipe.expire(key, JOB_TTL_SECONDS)
            pipe.zadd(JOBS_INDEX, {job_id: created})
            await pipe.execute()
        if self.enqueue is None:
            raise BadBackfill("no job queue configured")
        for sym in symbols:
            self.enqueue(job_id, {**meta, "symbol": sym})
        return {"job_id": job_id, "symbols": len(symbols)}

    async def update(self, job_id: str, symbol: str, **fields: Any) -> None:
        key = self._key(job_id)
        raw = await self.redis.hget(key, f"s:{symbol}")
        state = json.loads(raw) if raw else {}
        state.update(fields)
        await self.redis.hset(key, f"s:{symbol}", json.dumps(state))

    async def symbol_state(self, job_id: str, symbol: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self._key(job_id), f"s:{symbol}")
        return json.loads(raw) if raw else None

    async def status(self, job_id: str) -> dict[str, Any] | None:
        raw: Any = await self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        fields = {k.decode(): json.loads(v) for k, v in raw.items()}
        meta = fields.pop("_meta")
        symbols = {k[2:]: v for k, v in fields.items()}
        return {"job_id": job_id, **meta, **progress(symbols, time.time()), "symbols": symbols}

    async def recent(self, n: int = 20) -> list[dict[str, Any]]:
        ids: Any = await self.redis.zrevrange(JOBS_INDEX, 0, n - 1)
        out = []
        for raw_id in ids:
            status = await self.status(raw_id.decode())
            if status is not None:
                status.pop("symbols")
                out.append(status)
        return out
