"""What the engine must know before it approves an entry: whether the kill switch is engaged,
whether the Kite session is valid (both owned by the broker) and the account's equity and cash
(owned by the portfolio).

A process starts knowing none of them. They come from their owners over HTTP at start-up (and
again every so often), and from the owners' events on the bus (`KillSwitchEngaged/Released`,
`SessionValid/Expired`, `EquitySnapshot`). An event heard while an HTTP answer was on its way
is newer than that answer, so the answer is dropped for that source (`ticket`/`fresh`). Until
every source is known, entries are refused with `safety_state_unknown`; exits still go.
"""

from __future__ import annotations

SOURCES = ("kill_switch", "session", "equity")


class SafetyTracker:
    def __init__(self, known: tuple[str, ...] = ()):
        self.known: set[str] = set(known)
        self._heard = dict.fromkeys(SOURCES, 0)

    def heard(self, source: str) -> None:
        """An owner's event on the bus told the current value."""
        self.known.add(source)
        self._heard[source] += 1

    def ticket(self) -> dict[str, int]:
        """Taken before asking the owners: what the bus had said so far."""
        return dict(self._heard)

    def fresh(self, source: str, ticket: dict[str, int]) -> bool:
        """Whether an answer asked for with `ticket` is still the latest word on `source`."""
        return self._heard[source] == ticket.get(source, 0)

    def restored(self, source: str) -> None:
        self.known.add(source)

    @property
    def complete(self) -> bool:
        return all(s in self.known for s in SOURCES)

    def missing(self) -> list[str]:
        return [s for s in SOURCES if s not in self.known]
