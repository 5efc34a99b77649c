"""The broker's view of the Kite session: whether orders may be sent at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class KiteSession:
    user_id: str
    expires_at: datetime


class SessionHolder:
    """Holds the current Kite session, if any. Login comes with the broker issue; until a
    session exists every order is refused with `no_session`."""

    def __init__(self) -> None:
        self._session: KiteSession | None = None

    @property
    def current(self) -> KiteSession | None:
        return self._session

    def set(self, session: KiteSession | None) -> None:
        self._session = session
