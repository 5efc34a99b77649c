"""The daily Kite session, stored encrypted in Redis where every service can read it.

Kite's access token dies at 06:00 IST the day after login (DESIGN.md, "Kite facts"). The broker
writes the session after `generate_session`; the data service reads it for historical calls and
the ticker. The token is encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived
from a secret (`DALAL_SESSION_KEY`), so a Redis dump or a replica never holds it in clear, and
it never appears in a log (the redactor masks it by value as soon as it is loaded).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken

from dalal_shared.errors import ConfigError, PermanentError
from dalal_shared.logging import register_secret
from dalal_shared.timeutil import IST, ensure_aware, to_utc, utcnow

SESSION_KEY = "kite:session"
TOKEN_EXPIRY_IST = time(6, 0)


def token_expiry(login_at: datetime) -> datetime:
    """06:00 IST after `login_at`: the next day's, or the same day's for a login before 06:00."""
    local = ensure_aware(login_at).astimezone(IST)
    expiry = datetime.combine(local.date(), TOKEN_EXPIRY_IST, tzinfo=IST)
    if local >= expiry:
        expiry += timedelta(days=1)
    return to_utc(expiry)


@dataclass(frozen=True)
class KiteSessionRecord:
    user_id: str
    access_token: str
    login_at: datetime
    expires_at: datetime
    user_name: str = ""
    public_token: str = ""

    def __repr__(self) -> str:  # never print the token
        return (
            f"KiteSessionRecord(user_id={self.user_id!r}, login_at={self.login_at.isoformat()}, "
            f"expires_at={self.expires_at.isoformat()})"
        )

    def is_valid(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) < self.expires_at

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or utcnow()) - self.login_at).total_seconds()


class SessionCipherError(PermanentError):
    code = "session_unreadable"


def _fernet(secret: str) -> Fernet:
    if len(secret) < 16:
        raise ConfigError("DALAL_SESSION_KEY: must be at least 16 characters")
    digest = hashlib.sha256(b"dalal-kite-session\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class SessionStore:
    """Encrypted Kite session in Redis, expiring with the token."""

    def __init__(self, redis: aioredis.Redis, secret: str, *, key: str = SESSION_KEY):
        self.redis = redis
        self.key = key
        self._fernet = _fernet(secret)

    async def save(self, record: KiteSessionRecord) -> None:
        payload = json.dumps(
            {
                "user_id": record.user_id,
                "user_name": record.user_name,
                "access_token": record.access_token,
                "public_token": record.public_token,
                "login_at": to_utc(record.login_at).isoformat(),
                "expires_at": to_utc(record.expires_at).isoformat(),
            }
        ).encode()
        ttl_ms = max(1, int((record.expires_at - utcnow()).total_seconds() * 1000))
        await self.redis.set(self.key, self._fernet.encrypt(payload), px=ttl_ms)
        register_secret(record.access_token, record.public_token)

    async def load(self) -> KiteSessionRecord | None:
        """The stored session, or None when there is none or it has expired."""
        blob = await self.redis.get(self.key)
        if blob is None:
            return None
        try:
            data = json.loads(self._fernet.decrypt(blob))
        except InvalidToken:
            raise SessionCipherError(
                "the stored Kite session cannot be decrypted: DALAL_SESSION_KEY differs from "
                "the one it was written with; log in again"
            ) from None
        record = KiteSessionRecord(
            user_id=data["user_id"],
            user_name=data.get("user_name", ""),
            access_token=data["access_token"],
            public_token=data.get("public_token", ""),
            login_at=datetime.fromisoformat(data["login_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )
        register_secret(record.access_token, record.public_token)
        return record if record.is_valid() else None

    async def clear(self) -> None:
        await self.redis.delete(self.key)
