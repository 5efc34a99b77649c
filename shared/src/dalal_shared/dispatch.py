"""Map message types to handlers for one stream.

A type mapped to None is deliberately ignored. A type that is not mapped at all raises
`UnhandledMessage`, a permanent error: the bus dead-letters the entry instead of acking it
silently, so a new message type never vanishes unseen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from dalal_shared.bus import Handler
from dalal_shared.errors import PermanentError
from dalal_shared.messages import Envelope, Message

TypedHandler = Callable[[Any, Envelope], Awaitable[None]]


class UnhandledMessage(PermanentError):
    code = "unhandled_message"


def dispatcher(table: Mapping[type[Message], TypedHandler | None]) -> Handler:
    by_name = {cls.__name__: handler for cls, handler in table.items()}

    async def handle(envelope: Envelope) -> None:
        if envelope.type not in by_name:
            raise UnhandledMessage(f"no handler for {envelope.type}")
        handler = by_name[envelope.type]
        if handler is not None:
            await handler(envelope.message, envelope)

    return handle


def all_of(handlers: Sequence[Handler]) -> Handler:
    """One handler running each of `handlers` in turn (one consumer group per service and
    stream: two consumers in one group would split the stream's entries between them)."""
    chosen = tuple(handlers)

    async def handle(envelope: Envelope) -> None:
        for handler in chosen:
            await handler(envelope)

    return handle
