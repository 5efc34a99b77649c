"""The pre-market session check (08:30 IST on session days, sent by the scheduler, run by the
data-worker): is there a valid stored Kite session for today's trading?

It reads the broker's encrypted session (`dalal_shared.kitesession`) and, when one is stored
and unexpired, proves the token with one `profile` call (a revoked token fails there). The
outcome is kept in Redis (`GET /jobs` shows it; a restarted worker restores its gauges from it)
and exported as `dalal_kite_premarket_check_ok` (1 valid, 0 none/expired/refused) and
`dalal_kite_premarket_check_timestamp_seconds`. The gauges are absent until a check has run,
so an alert on `== 0` never fires on a freshly started worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from dalal_data.config import DataSettings
from dalal_data.jobs import record_run
from dalal_data.kite import KiteGateway, KiteUnavailable, NoKiteSession
from dalal_shared.errors import DalalError
from dalal_shared.kitesession import SessionCipherError, SessionStore
from dalal_shared.logging import get_logger
from dalal_shared.ratelimit import RateLimiter
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

PREMARKET_KEY = "data:premarket:last"
JOB_NAME = "premarket_check"


class _PremarketCollector(Collector):
    def __init__(self) -> None:
        self.ok: float | None = None
        self.timestamp = 0.0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.ok is None:
            return
        yield GaugeMetricFamily(
            "dalal_kite_premarket_check_ok",
            "1 when the last pre-market check found a valid stored Kite session, else 0",
            value=self.ok,
        )
        yield GaugeMetricFamily(
            "dalal_kite_premarket_check_timestamp_seconds",
            "Unix time of the last pre-market session check",
            value=self.timestamp,
        )

    def describe(self) -> list[Any]:
        return []


GAUGES = _PremarketCollector()
REGISTRY.register(GAUGES)


def _export(outcome: dict[str, Any]) -> None:
    GAUGES.ok = 1.0 if outcome["ok"] else 0.0
    GAUGES.timestamp = datetime.fromisoformat(outcome["checked_at"]).timestamp()


async def _verdict(settings: DataSettings, redis: aioredis.Redis) -> tuple[bool, str, dict]:
    if settings.session_key is None:
        return False, "no_session_key", {}
    store = SessionStore(redis, settings.session_key.get_secret_value())
    try:
        record = await store.load()
    except SessionCipherError:
        return False, "session_unreadable", {}
    if record is None:
        return False, "no_session", {}
    facts = {"user_id": record.user_id, "expires_at": record.expires_at.isoformat()}
    token = record.access_token

    async def stored() -> str:
        return token

    gateway = KiteGateway(
        api_key=settings.kite_api_key,
        root_url=settings.kite_root_url,
        token_source=stored,
        limiter=RateLimiter(redis, namespace=settings.kite_api_key or "default"),
        timeout_seconds=settings.kite_timeout_seconds,
        max_attempts=min(settings.kite_max_attempts, 3),
        ratelimit_wait_seconds=settings.kite_ratelimit_wait_seconds,
    )
    try:
        await gateway.profile()
    except NoKiteSession:
        return False, "token_rejected", facts
    except KiteUnavailable:
        return False, "kite_unavailable", facts
    except DalalError as exc:
        return False, getattr(exc, "code", "kite_error"), facts
    return True, "ok", facts


async def check_session(settings: DataSettings, day: str | None = None) -> dict[str, Any]:
    """Run the check, record and export its outcome; returns it (never the token)."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        ok, reason, facts = await _verdict(settings, redis)
        outcome = {
            "ok": ok,
            "reason": reason,
            "day": day,
            "checked_at": utcnow().isoformat(),
            **facts,
        }
        await redis.set(PREMARKET_KEY, json.dumps(outcome))
        await record_run(redis, JOB_NAME, {"state": "succeeded" if ok else "failed", **outcome})
    finally:
        await redis.aclose()
    _export(outcome)
    (log.info if ok else log.error)("premarket.checked", ok=ok, reason=reason, day=day)
    return outcome


async def restore(redis: aioredis.Redis) -> dict[str, Any] | None:
    """Export the last recorded outcome (a restarted worker keeps reporting it)."""
    raw = await redis.get(PREMARKET_KEY)
    if raw is None:
        return None
    outcome = json.loads(raw)
    _export(outcome)
    return outcome
