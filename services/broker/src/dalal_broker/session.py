"""The daily Kite session of the broker: login, the stored token, expiry.

A TokenException from any call marks the session expired: orders pause (new ones are refused
with `no_session`) and SessionExpired is published, until the next login. `watch()` keeps that
view honest when no order is going: it expires the session once its 06:00 IST is past and asks
Kite (`profile`, one cheap call) every `check_interval_seconds`, so a token Kite (or kitesim)
has killed for any reason flips `/session`, the gauge and the engine (SessionExpired) within one
interval, even with no order in flight (ADR 0005).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from urllib.parse import urlencode

from prometheus_client import Gauge

from dalal_broker.kite import KiteGateway, KiteSessionError, KiteUnavailable, rate_limited
from dalal_shared.bus import Handler, Publisher
from dalal_shared.errors import PermanentError
from dalal_shared.kitesession import KiteSessionRecord, SessionStore, token_expiry
from dalal_shared.logging import get_logger
from dalal_shared.messages import Envelope, KiteSessionRefused, SessionExpired, SessionValid
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.timeutil import ist_iso, utcnow

log = get_logger(__name__)

SESSION_VALID = Gauge("dalal_kite_session_valid", "1 while a valid Kite session is held")
TOKEN_AGE = Gauge("dalal_kite_token_age_seconds", "Age of the Kite access token")
TOKEN_EXPIRES = Gauge(
    "dalal_kite_token_expiry_timestamp_seconds", "When the Kite access token dies (unix time)"
)


_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,128}")


LOGIN_ATTEMPTS = 4  # a login that meets Kite's rate limit asks again (1.5 s in all)


class LoginFailed(PermanentError):
    code = "login_failed"


class SessionManager:
    def __init__(
        self,
        *,
        gateway: KiteGateway,
        store: SessionStore,
        publisher: Publisher,
        api_key: str,
        api_secret: str,
        login_url: str,
        check_interval_seconds: float = 30.0,
    ):
        self.gateway = gateway
        self.store = store
        self.publisher = publisher
        self.api_key = api_key
        self.api_secret = api_secret
        self._login_url = login_url
        self.check_interval_seconds = check_interval_seconds
        self.current: KiteSessionRecord | None = None

    def login_url(self) -> str:
        return f"{self._login_url}?{urlencode({'api_key': self.api_key, 'v': 3})}"

    @property
    def valid(self) -> bool:
        return self.current is not None and self.current.is_valid()

    async def load(self) -> KiteSessionRecord | None:
        """Pick up a session stored earlier (a restart, or another replica's login)."""
        record = await self.store.load()
        self._use(record)
        return record

    async def complete_login(self, request_token: str) -> KiteSessionRecord:
        request_token = request_token.strip()
        if not _TOKEN.fullmatch(request_token):
            raise LoginFailed("request_token must be the token Kite redirected with")
        for attempt in range(1, LOGIN_ATTEMPTS + 1):
            try:
                data = await self.gateway.generate_session(request_token, self.api_secret)
                break
            except PermanentError as exc:
                raise LoginFailed(f"Kite refused the login: {exc.message}") from None
            except KiteUnavailable as exc:
                # a 429 was refused before Kite looked at the token: the one-time request
                # token is still good, so ask again (anything else may have used it up)
                if attempt == LOGIN_ATTEMPTS or not rate_limited(exc):
                    raise
                await asyncio.sleep(0.5 * attempt)
        now = utcnow()
        record = KiteSessionRecord(
            user_id=str(data.get("user_id", "")),
            user_name=str(data.get("user_name", "")),
            access_token=str(data["access_token"]),
            public_token=str(data.get("public_token", "")),
            login_at=now,
            expires_at=token_expiry(now),
        )
        await self.store.save(record)
        self._use(record)
        await self.publisher.publish(
            SYSTEM_EVENTS, SessionValid(user_id=record.user_id, expires_at=record.expires_at)
        )
        log.info("session.login", user_id=record.user_id, expires_at=record.expires_at)
        return record

    async def expire(self, reason: str) -> None:
        """Kite said the token is dead: stop using it and tell everyone."""
        was_valid = self.current is not None
        await self.store.clear()
        self._use(None)
        if was_valid:
            await self.publisher.publish(SYSTEM_EVENTS, SessionExpired(reason=reason))
            log.warning("session.expired", reason=reason)

    async def check(self) -> bool:
        """Is the held session still good? Expires it (SessionExpired) when its time has passed
        or Kite answers TokenException; a Kite that cannot be reached says nothing either way."""
        record = self.current
        if record is None:
            return False
        if not record.is_valid():
            await self.expire("the access token's expiry time (06:00 IST) has passed")
            return False
        try:
            await self.gateway.profile()
        except KiteSessionError:
            if self.current is record:  # not a login that happened meanwhile
                await self.expire("TokenException from Kite")
                return False
        except Exception as exc:  # unreachable, rate limited: the next round asks again
            log.warning("session.check_failed", error=type(exc).__name__)
        return self.valid

    async def watch(self) -> None:
        """Check the session every `check_interval_seconds` (the order placer runs this)."""
        while True:
            await asyncio.sleep(self.check_interval_seconds)
            try:
                await self.check()
            except Exception as exc:  # keep watching whatever one round did
                log.error("session.watch_failed", error=repr(exc))

    def _use(self, record: KiteSessionRecord | None) -> None:
        self.current = record
        self.gateway.set_access_token(record.access_token if record else None)
        self.refresh_gauges()

    def refresh_gauges(self, now: datetime | None = None) -> None:
        record = self.current
        valid = record is not None and record.is_valid(now)
        SESSION_VALID.set(1 if valid else 0)
        TOKEN_AGE.set(record.age_seconds(now) if record else 0)
        TOKEN_EXPIRES.set(record.expires_at.timestamp() if record else 0)

    def view(self) -> dict[str, object]:
        record = self.current
        if record is None:
            return {
                "valid": False,
                "user_id": None,
                "login_at": None,
                "expires_at": None,
                "login_url": self.login_url(),
            }
        return {
            "valid": record.is_valid(),
            "user_id": record.user_id,
            "user_name": record.user_name,
            "login_at": ist_iso(record.login_at),
            "expires_at": ist_iso(record.expires_at),
            "login_url": self.login_url(),
        }


def session_reports_handler(session: SessionManager) -> Handler:
    """`system.events`: another service's Kite call was refused (KiteSessionRefused): check the
    session now instead of at the watchdog's next round, so `/session`, the engine and
    `dalal status` flip within one event when Kite has killed the token."""

    async def handle(envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, KiteSessionRefused) and session.current is not None:
            log.info("session.refused_elsewhere", service=message.service, reason=message.reason)
            await session.check()

    return handle
