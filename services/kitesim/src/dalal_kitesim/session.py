"""Kite sessions: request tokens from the login page, access tokens, their expiry.

An access token dies at 06:00 IST of the day after its login (Kite's rule), or at once through the
fault API. "Day" on the token clock: the wall clock by default (`expiry_clock="wall"`, as on Kite: a
login lasts the user's working day however fast the market replays, and Dalal's broker computes
the same expiry), or the simulated market clock (`expiry_clock="market"`, for tests of expiry: a
token then dies a few real minutes after login at the default replay speed). See ADR 0005.
Tokens are random; the sessions are part of kitesim's persisted state (`state.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dalal_kitesim.errors import InputException, TokenException
from dalal_shared.kitesession import token_expiry


@dataclass
class AccessSession:
    user_id: str
    access_token: str
    public_token: str
    login_time: datetime
    expires_at: datetime | None


def expiry_after(login: datetime) -> datetime:
    """06:00 IST after `login`: the rule Dalal's broker applies too (one function for both)."""
    return token_expiry(login)


class SessionStore:
    """Request and access tokens; `clock` is the token clock (wall or simulated, see above)."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        user_id: str,
        clock: Callable[[], datetime],
        expire: bool = True,
    ):
        self.api_key = api_key
        self.api_secret = api_secret
        self.user_id = user_id
        self.clock = clock
        self.expire = expire
        self._request_tokens: dict[str, str] = {}
        self._sessions: dict[str, AccessSession] = {}
        self.on_change: Callable[[], None] = lambda: None

    def issue_request_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self._request_tokens[token] = user_id or self.user_id
        self.on_change()
        return token

    def exchange(self, api_key: str, request_token: str, checksum: str) -> AccessSession:
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
        now = self.clock()
        session = AccessSession(
            user_id=user_id,
            access_token=secrets.token_urlsafe(24),
            public_token=secrets.token_hex(16),
            login_time=now,
            expires_at=expiry_after(now) if self.expire else None,
        )
        self._sessions[session.access_token] = session
        self.on_change()
        return session

    def check(self, authorization: str | None) -> AccessSession:
        """Validate `Authorization: token api_key:access_token`."""
        if not authorization or not authorization.startswith("token "):
            raise TokenException("Incorrect `api_key` or `access_token`.")
        api_key, _, access_token = authorization[6:].strip().partition(":")
        return self.check_pair(api_key, access_token)

    def check_pair(self, api_key: str, access_token: str) -> AccessSession:
        if api_key != self.api_key:
            raise TokenException("Incorrect `api_key` or `access_token`.")
        session = self._sessions.get(access_token)
        if session is None:
            raise TokenException("Incorrect `api_key` or `access_token`.")
        if session.expires_at is not None and self.clock() >= session.expires_at:
            self._sessions.pop(access_token, None)
            self.on_change()
            raise TokenException("Token is invalid or has expired.")
        return session

    def invalidate(self, access_token: str) -> bool:
        gone = self._sessions.pop(access_token, None) is not None
        self.on_change()
        return gone

    def expire_all(self) -> int:
        count = len(self._sessions)
        self._sessions.clear()
        self.on_change()
        return count

    def live(self) -> list[AccessSession]:
        """Sessions not yet expired on the token clock."""
        now = self.clock()
        return [s for s in self._sessions.values() if s.expires_at is None or now < s.expires_at]

    # -- persistence (state.py) ---------------------------------------------------------------
    def dump(self) -> dict[str, object]:
        return {
            "request_tokens": dict(self._request_tokens),
            "sessions": [
                {
                    "user_id": s.user_id,
                    "access_token": s.access_token,
                    "public_token": s.public_token,
                    "login_time": s.login_time.isoformat(),
                    "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                }
                for s in self._sessions.values()
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self._request_tokens = dict(data.get("request_tokens", {}))
        self._sessions = {}
        for row in data.get("sessions", []):
            expires = row.get("expires_at")
            session = AccessSession(
                user_id=row["user_id"],
                access_token=row["access_token"],
                public_token=row["public_token"],
                login_time=datetime.fromisoformat(row["login_time"]),
                expires_at=datetime.fromisoformat(expires) if expires else None,
            )
            self._sessions[session.access_token] = session
