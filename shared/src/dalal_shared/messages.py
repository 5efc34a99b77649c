"""Message contracts of the Redis Streams bus.

Every stream entry is an envelope with the fields `type` (class name), `v` (schema version),
`id` (unique, sortable), `ts` (UTC), `source` (service), `corr` (correlation id, carried from
tick to fill) and `data` (the message as JSON). Commands are imperative (`PlaceOrder`), events
past tense (`OrderFilled`). Money is Decimal (sent as a string), times are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime as PydanticAwareDatetime
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dalal_shared.errors import PermanentError
from dalal_shared.ids import new_id
from dalal_shared.intervals import Interval
from dalal_shared.symbols import Symbol
from dalal_shared.timeutil import to_utc, utcnow

# a time without a zone is refused (pydantic's own check, in its core: no Python call a field)
AwareDatetime = PydanticAwareDatetime
Rupees = Annotated[Decimal, Field(max_digits=20, decimal_places=4)]
PositiveRupees = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=4)]
Quantity = Annotated[int, Field(gt=0, le=10_000_000)]
Exchange = Literal["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"]
ClientOrderId = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9_\-]+$")]

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT", "SL", "SL-M"]
Product = Literal["CNC", "MIS", "NRML"]
Validity = Literal["DAY", "IOC"]
Variety = Literal["regular", "amo"]


class MessageDecodeError(PermanentError):
    code = "bad_message"


class Message(BaseModel):
    """Base of every bus message. `version` is bumped on an incompatible change."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: ClassVar[int] = 1
    kind: ClassVar[Literal["command", "event"]] = "event"


_REGISTRY: dict[str, type[Message]] = {}


def register(cls: type[Message]) -> type[Message]:
    _REGISTRY[cls.__name__] = cls
    return cls


def message_types() -> dict[str, type[Message]]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------- orders: commands


@register
class PlaceOrder(Message):
    kind: ClassVar = "command"
    client_order_id: ClientOrderId
    exchange: Exchange = "NSE"
    symbol: Symbol
    side: Side
    quantity: Quantity
    order_type: OrderType = "MARKET"
    product: Product = "CNC"
    price: PositiveRupees | None = None
    trigger_price: PositiveRupees | None = None
    validity: Validity = "DAY"
    variety: Variety = "regular"
    market_protection: Annotated[Decimal, Field(ge=0, le=100)] | None = None
    strategy: str | None = None


@register
class ModifyOrder(Message):
    kind: ClassVar = "command"
    client_order_id: ClientOrderId
    quantity: Quantity | None = None
    order_type: OrderType | None = None
    price: PositiveRupees | None = None
    trigger_price: PositiveRupees | None = None


@register
class CancelOrder(Message):
    kind: ClassVar = "command"
    client_order_id: ClientOrderId
    reason: str | None = None


@register
class ProtectPosition(Message):
    """Keep a protective stop (and optional target) for a CNC holding at the exchange: a Kite
    GTT that places a SELL LIMIT when the price reaches `stop_price` (or `target_price`), so
    it fires while Dalal is down. `client_order_id` is the id the order it places will carry
    in the journal and in its events. Sent again with other terms, the GTT is modified."""

    kind: ClassVar = "command"
    client_order_id: ClientOrderId
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Literal["CNC"] = "CNC"
    quantity: Quantity
    stop_price: PositiveRupees
    target_price: PositiveRupees | None = None
    strategy: str | None = None

    @model_validator(mode="after")
    def _target_above_stop(self) -> ProtectPosition:
        if self.target_price is not None and self.target_price <= self.stop_price:
            raise ValueError("target_price must be above stop_price")
        return self


@register
class CancelProtection(Message):
    """Remove the protection (the GTT) of `client_order_id`; nothing when there is none."""

    kind: ClassVar = "command"
    client_order_id: ClientOrderId
    reason: str | None = None


# ---------------------------------------------------------------- orders: events


@register
class OrderAccepted(Message):
    client_order_id: ClientOrderId
    broker_order_id: str
    status: str = "OPEN"


@register
class OrderRejected(Message):
    client_order_id: ClientOrderId
    reason: str = Field(description="stable code, e.g. no_session, margin, input")
    message: str = ""
    broker_order_id: str | None = None


@register
class OrderUpdated(Message):
    client_order_id: ClientOrderId
    broker_order_id: str
    status: str
    filled_quantity: int = Field(0, ge=0)
    pending_quantity: int = Field(0, ge=0)
    average_price: Rupees | None = None
    # the order's terms after a modification (None: unchanged or not known)
    quantity: int | None = Field(None, gt=0)
    price: Rupees | None = None
    trigger_price: Rupees | None = None


@register
class OrderFilled(Message):
    client_order_id: ClientOrderId
    broker_order_id: str
    trade_id: str
    exchange: Exchange = "NSE"
    symbol: Symbol
    side: Side
    product: Product
    quantity: Quantity
    price: PositiveRupees
    filled_at: AwareDatetime


@register
class OrderCancelled(Message):
    client_order_id: ClientOrderId
    broker_order_id: str | None = None
    filled_quantity: int = Field(0, ge=0)
    reason: str = ""


@register
class ProtectionPlaced(Message):
    """The protection of `client_order_id` is live at the exchange (placed or modified)."""

    client_order_id: ClientOrderId
    gtt_id: int
    stop_price: PositiveRupees
    target_price: PositiveRupees | None = None


@register
class ProtectionRemoved(Message):
    """The protection of `client_order_id` is gone: `triggered` (its order was placed under
    that id; its fills follow as usual), `cancelled`, `expired`, `failed` (Kite refused it or
    its order; `message` says why)."""

    client_order_id: ClientOrderId
    reason: Literal["triggered", "cancelled", "expired", "failed"]
    gtt_id: int | None = None
    broker_order_id: str | None = None
    message: str = ""


# ---------------------------------------------------------------- market data


@register
class Tick(Message):
    instrument_token: int = Field(ge=0)
    exchange: Exchange = "NSE"
    symbol: Symbol
    last_price: PositiveRupees
    volume: int = Field(0, ge=0)
    exchange_ts: AwareDatetime


@register
class Bar(Message):
    exchange: Exchange = "NSE"
    symbol: Symbol
    interval: Interval
    start: AwareDatetime
    open: PositiveRupees
    high: PositiveRupees
    low: PositiveRupees
    close: PositiveRupees
    volume: int = Field(0, ge=0)


# ---------------------------------------------------------------- portfolio


@register
class PositionOpened(Message):
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Product
    quantity: int
    average_price: PositiveRupees
    opened_at: AwareDatetime


@register
class PositionReduced(Message):
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Product
    quantity_closed: Quantity
    quantity_remaining: int
    realised_pnl: Rupees
    reason: str = ""


@register
class PositionClosed(Message):
    exchange: Exchange = "NSE"
    symbol: Symbol
    product: Product
    realised_pnl: Rupees
    charges: Rupees = Decimal("0")
    closed_at: AwareDatetime
    reason: str = ""  # why the closing order was placed (e.g. "stop-loss (S-...)"), when known


@register
class EquitySnapshot(Message):
    equity: Rupees
    cash: Rupees
    realised_pnl: Rupees
    unrealised_pnl: Rupees
    open_positions: int = Field(ge=0)
    at: AwareDatetime
    session_day: date | None = Field(None, description="set on the end-of-day snapshot")


# ---------------------------------------------------------------- engine


@register
class RiskDecided(Message):
    """The risk manager's verdict on one signal: taken or refused, and why."""

    strategy: str
    exchange: Exchange = "NSE"
    symbol: Symbol
    action: Literal["ENTER", "REDUCE", "EXIT"]
    approved: bool
    reason: str = Field(description="ok, or a refusal code such as kill_switch, daily_loss")
    quantity: int = Field(0, ge=0)
    detail: str = ""
    decided_at: AwareDatetime


# ---------------------------------------------------------------- system


@register
class SessionValid(Message):
    user_id: str
    expires_at: AwareDatetime


@register
class SessionExpired(Message):
    reason: str


@register
class KiteSessionRefused(Message):
    """A service other than the broker had a Kite call refused with TokenException (the data
    service's candles or instruments). The broker, which owns the session, checks it at once:
    if Kite refuses it too it publishes SessionExpired; a stale report changes nothing."""

    service: str
    reason: str


@register
class DataStale(Message):
    feed: str
    last_tick_at: AwareDatetime | None = None
    age_seconds: float = Field(ge=0)


@register
class SessionClosed(Message):
    """The exchange session of `day` (IST) is over: end-of-day work may start (published by the
    single scheduler after the close, once per trading day)."""

    day: date
    closed_at: AwareDatetime


@register
class KillSwitchEngaged(Message):
    reason: str
    engaged_by: str


@register
class KillSwitchReleased(Message):
    released_by: str


@register
class ReconcileCompleted(Message):
    """A reconciliation ran by itself (`trigger`: after a start, a new session, the day's close).
    `scope` "portfolio": the ledger against Kite's positions, holdings and the journal's trades;
    "broker": the order journal against Kite's order book and trades. `kinds` lists the distinct
    break kinds (empty when clean)."""

    scope: Literal["portfolio", "broker"]
    trigger: Literal["start", "session_valid", "session_closed", "manual"]
    breaks: int = Field(ge=0)
    kinds: tuple[str, ...] = ()
    day: date | None = None  # the session day of an end-of-day run
    completed_at: AwareDatetime


# ---------------------------------------------------------------- envelope


class Envelope(BaseModel):
    """A message with its routing metadata, as stored in a stream entry."""

    model_config = ConfigDict(frozen=True)

    type: str
    v: int
    id: str = Field(default_factory=new_id)
    ts: AwareDatetime = Field(default_factory=utcnow)
    source: str
    corr: str
    message: Message

    @classmethod
    def wrap(cls, message: Message, *, source: str, corr: str | None = None) -> Envelope:
        msg_id = new_id()
        return cls(
            type=type(message).__name__,
            v=type(message).version,
            id=msg_id,
            source=source,
            corr=corr or msg_id,
            message=message,
        )

    def to_fields(self) -> dict[str, str]:
        """The flat string fields of a Redis stream entry."""
        return {
            "type": self.type,
            "v": str(self.v),
            "id": self.id,
            "ts": to_utc(self.ts).isoformat(),
            "source": self.source,
            "corr": self.corr,
            "data": self.message.model_dump_json(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Envelope:
        """Parse a stream entry; raise MessageDecodeError (never retryable) when it is bad.

        Anything a stream entry can hold is either an envelope or a MessageDecodeError: bytes
        that are not UTF-8, a field too large for any message (`MAX_FIELD_BYTES`), missing
        fields, bad JSON, an unknown type or a newer version. No other exception escapes, so
        the bus can always dead-letter the entry and move on."""
        try:
            f = {_text(k): _text(v) for k, v in fields.items()}
        except MessageDecodeError:
            raise
        except Exception as exc:  # not a mapping of str/bytes
            raise MessageDecodeError(f"not a stream entry: {type(exc).__name__}") from None
        try:
            type_name = f["type"]
            version = int(f["v"])
            message_cls = _REGISTRY[type_name]
        except KeyError as exc:
            raise MessageDecodeError(
                f"unknown or missing message type/field: {_clip(str(exc))}"
            ) from None
        except ValueError:
            raise MessageDecodeError(f"bad version {_clip(f.get('v', ''))!r}") from None
        if version > message_cls.version:
            raise MessageDecodeError(
                f"{type_name} v{version} is newer than this service understands "
                f"(v{message_cls.version})"
            )
        try:
            message = message_cls.model_validate_json(f["data"])
            return cls(
                type=type_name,
                v=version,
                id=f["id"],
                ts=datetime.fromisoformat(f["ts"]),
                source=f["source"],
                corr=f["corr"],
                message=message,
            )
        except (KeyError, ValueError, ValidationError) as exc:
            raise MessageDecodeError(f"bad {type_name} entry: {_clip(str(exc))}") from None
        except Exception as exc:  # e.g. RecursionError on absurdly nested JSON
            raise MessageDecodeError(f"bad {type_name} entry: {type(exc).__name__}") from None


MAX_FIELD_BYTES = 256 * 1024
"""No field of a valid envelope comes near this (a message is a few hundred bytes); an entry
with a larger field is refused before any JSON parsing."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        if len(value) > MAX_FIELD_BYTES:
            raise MessageDecodeError(f"a field of {len(value)} bytes (limit {MAX_FIELD_BYTES})")
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise MessageDecodeError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if isinstance(value, str):
        if len(value) > MAX_FIELD_BYTES:
            raise MessageDecodeError(f"a field of {len(value)} chars (limit {MAX_FIELD_BYTES})")
        return value
    raise MessageDecodeError(f"a field of type {type(value).__name__}")


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
