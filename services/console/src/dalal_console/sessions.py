"""Console logins: a signed session cookie and its CSRF token, nothing stored server-side.

A person logs in by presenting the API key. The console answers with a cookie
`<issued>.<nonce>.<signature>`: the signature is an HMAC keyed by a secret derived from the
API key, so every replica of the console accepts it, a restart keeps people logged in, and
rotating the key logs everyone out. The cookie is HttpOnly and SameSite=Strict.

Every mutating request made with the cookie must also carry `X-CSRF-Token`: an HMAC of the
session's nonce, which the console writes into its own pages (a page of another site can
neither read it nor send the header). Requests that present the API key itself (scripts) need
no CSRF token: they carry no ambient credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE_NAME = "dalal_console"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    issued: int  # unix seconds
    nonce: str

    def expires(self, lifetime_seconds: float) -> float:
        return self.issued + lifetime_seconds


class SessionSigner:
    """Makes and checks session cookies and CSRF tokens for one API key."""

    def __init__(self, api_key: str, *, lifetime_seconds: float):
        self._secret = hmac.new(api_key.encode(), b"dalal console session", hashlib.sha256).digest()
        self._key_digest = hashlib.sha256(api_key.encode()).digest()
        self.lifetime_seconds = lifetime_seconds

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def key_matches(self, presented: str) -> bool:
        """Is `presented` the API key (compared in constant time, through its digest)?"""
        digest = hashlib.sha256(presented.encode()).digest()
        return hmac.compare_digest(digest, self._key_digest)

    def issue(self, now: float) -> tuple[str, Session]:
        session = Session(issued=int(now), nonce=secrets.token_hex(16))
        body = f"{session.issued}.{session.nonce}"
        return f"{body}.{self._sign(body)}", session

    def verify(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        issued, nonce, signature = int(parts[0]), parts[1], parts[2]
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{nonce}"), signature):
            return None
        session = Session(issued=issued, nonce=nonce)
        if not (issued - 60 <= now < session.expires(self.lifetime_seconds)):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf_token(session), presented)
