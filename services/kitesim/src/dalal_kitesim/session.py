"""Kite sessions: request tokens from the login page, access tokens, their expiry.

An access token dies at 06:00 IST of the simulated day after its login (Kite's rule), or at once
through the fault API. Tokens are random; only their sha256 would need storing, but kitesim is a
simulator and keeps them in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from dalal_kitesim.errors import InputException, TokenException
from dalal_shared.timeutil import IST, to_utc


@dataclass
class AccessSession:
    user_id: str
    access_token: str
    public_token: str
    login_time: datetime
    expires_at: datetime | None


def expiry_after(login: datetime) -> datetime:
    """06:00 IST of the day after `login` (IST)."""
    local = login.astimezone(IST)
    return to_utc(datetime.combine(local.date() + timedelta(days=1), time(6, 0), tzinfo=IST))


class SessionStore:
    def __init__(self, *, api_key: str, api_secret: str, user_id: str, expire: bool = True):
        self.api_key = api_key
        self.api_secret = api_secret
        self.user_id = user_id
        self.expire = expire
        self._request_tokens: dict[str, str] = {}
        self._sessions: dict[str, AccessSession] = {}

    def issue_request_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self._request_tokens[token] = user_id or self.user_id
        return token

    def exchange(
        self, api_key: str, request_token: str, checksum: str, now: datetime
    ) -> AccessSession:
        if not api_key or not request_token or not checksum:
            raise InputException("Missing `api_key`, `request_token` or `checksum`.")
        if api_key != self.api_key:
            raise InputException("Invalid `api_key`.")
        expected = hashlib.sha256((api_key + request_token + self.api_secret).encode()).hexdigest()
        if not hmac.compare_digest(expected, checksum.lower()):
            raise TokenException("Invalid `checksum`.")
        user_id = self._request_tokens.pop(request_token, None)
        if user_id is None:
            raise TokenException("Token is invalid or has expired.")
        session = AccessSession(
            user_id=user_id,
            access_token=secrets.token_urlsafe(24),
            public_token=secrets.token_hex(16),
            login_time=now,
            expires_at=expiry_after(now) if self.expire else None,
        )
        self._sessions[session.access_token] = session
        return session

    def check(self, authorization: str | None, now: datetime) -> AccessSession:
        """Validate `Authorization: token api_key:access_token`."""
        if not authorization or not authorization.startswith("token "):
            raise TokenException("Incorrect `api_key` or `access_token`.")
        api_key, _, access_token = authorization[6:].strip().partition(":")
        return self.check_pair(api_key, access_token, now)

    def check_pair(self, api_key: str, access_token: str, now: datetime) -> AccessSession:
        if api_key != self.api_key:
            raise TokenException("Incorrect `api_key` or `access_token`.")
        session = self._sessions.get(access_token)
        if session is None:
            raise TokenException("Incorrect `api_key` or `access_token`.")
        if session.expires_at is not None and now >= session.expires_at:
            self._sessions.pop(access_token, None)
            raise TokenException("Token is invalid or has expired.")
        return session

    def invalidate(self, access_token: str) -> bool:
        return self._sessions.pop(access_token, None) is not None

    def expire_all(self) -> int:
        count = len(self._sessions)
        self._sessions.clear()
        return count
