"""The Kite session: expiry at 06:00 IST, stored encrypted, readable by every service."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from dalal_shared.kitesession import (
    KiteSessionRecord,
    SessionCipherError,
    SessionStore,
    token_expiry,
)
from dalal_shared.timeutil import IST, utcnow

TOKEN = "kiteAccessToken1234567890abcdef"


@pytest.mark.parametrize(
    ("login", "expiry"),
    [
        (datetime(2025, 3, 3, 8, 30, tzinfo=IST), datetime(2025, 3, 4, 6, 0, tzinfo=IST)),
        (datetime(2025, 3, 3, 23, 59, tzinfo=IST), datetime(2025, 3, 4, 6, 0, tzinfo=IST)),
        (datetime(2025, 3, 3, 5, 59, tzinfo=IST), datetime(2025, 3, 3, 6, 0, tzinfo=IST)),
        (datetime(2025, 3, 3, 6, 0, tzinfo=IST), datetime(2025, 3, 4, 6, 0, tzinfo=IST)),
        # 02:00 UTC on the 3rd is 07:30 IST on the 3rd
        (
            datetime.fromisoformat("2025-03-03T02:00:00+00:00"),
            datetime(2025, 3, 4, 6, 0, tzinfo=IST),
        ),
    ],
)
def test_token_dies_at_six_ist(login: datetime, expiry: datetime) -> None:
    assert token_expiry(login) == expiry


def _record(**kw) -> KiteSessionRecord:
    now = utcnow()
    values = {
        "user_id": "AB1234",
        "access_token": TOKEN,
        "login_at": now,
        "expires_at": now + timedelta(hours=5),
    }
    values.update(kw)
    return KiteSessionRecord(**values)


async def test_round_trip_and_the_token_is_not_stored_in_clear(aredis: aioredis.Redis) -> None:
    store = SessionStore(aredis, "a-session-secret-0123456789")
    await store.save(_record())
    raw = await aredis.get("kite:session")
    assert TOKEN.encode() not in raw and b"AB1234" not in raw
    # another service with the same secret reads it
    loaded = await SessionStore(aredis, "a-session-secret-0123456789").load()
    assert loaded is not None
    assert (loaded.user_id, loaded.access_token) == ("AB1234", TOKEN)
    assert TOKEN not in repr(loaded)


async def test_expired_session_is_never_returned(aredis: aioredis.Redis) -> None:
    store = SessionStore(aredis, "a-session-secret-0123456789")
    now = utcnow()
    await store.save(
        _record(login_at=now - timedelta(days=1), expires_at=now - timedelta(seconds=1))
    )
    assert await store.load() is None


async def test_wrong_secret_says_what_to_do(aredis: aioredis.Redis) -> None:
    await SessionStore(aredis, "a-session-secret-0123456789").save(_record())
    with pytest.raises(SessionCipherError) as exc:
        await SessionStore(aredis, "another-secret-9876543210").load()
    assert exc.value.code == "session_unreadable"


def test_short_secret_is_refused() -> None:
    with pytest.raises(Exception, match="16 characters"):
        SessionStore(None, "short")  # type: ignore[arg-type]
