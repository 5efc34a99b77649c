"""Settings: one pydantic-settings class per service, built once at start-up and passed in.

Every variable has the `DALAL_` prefix. A bad or missing value stops start-up with a
`ConfigError` whose message names the environment variable (never its secret value).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dalal_shared.errors import ConfigError

ENV_PREFIX = "DALAL_"

S = TypeVar("S", bound=BaseSettings)


class DalalSettings(BaseSettings):
    """Fields every service has. Services subclass it and add their own."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="ignore", frozen=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6390/0", description="Redis of the bus, rate limits and locks"
    )
    host: str = Field("127.0.0.1", description="address the HTTP API binds to")
    port: int = Field(8000, ge=1, le=65535)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    api_key: SecretStr | None = Field(
        None, description="bearer key for every route; only its sha256 is kept in memory"
    )
    api_key_sha256: str | None = Field(
        None, description="sha256 hex of the bearer key, when the plain key is not given"
    )
    read_api_key: SecretStr | None = Field(
        None,
        description="a second bearer key that may only read (GET); this service also presents "
        "it to other services when it has no plain DALAL_API_KEY",
    )
    read_api_key_sha256: str | None = Field(
        None, description="sha256 hex of the read-only key, when the plain key is not given"
    )
    read_key_required: bool = Field(
        True,
        description="reads need a key too (the API key or the read-only key); false opens "
        "every GET route (health, readiness, metrics and the docs are always open)",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=1024**3, description="largest request body accepted (413 over)"
    )
    public_max_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=1024**3,
        description="largest request body on routes open without a key (Kite's postbacks)",
    )
    consumer_name: str | None = Field(
        None, description="this process's name in its consumer groups (default host-pid)"
    )
    consumer_group: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="the bus consumer group this process reads in (default: the service's "
        "name); processes of one group share the work, each group sees every entry",
    )
    bus_batch_size: int = Field(100, ge=1, le=10_000)
    bus_block_ms: int = Field(1000, ge=1, le=60_000)
    bus_max_deliveries: int = Field(
        5, ge=1, le=1000, description="handler failures (handler alive) before a dead letter"
    )
    bus_max_crash_deliveries: int = Field(
        50,
        ge=2,
        le=100_000,
        description="deliveries ended by a dying consumer before a dead letter (safety bound)",
    )
    bus_claim_idle_ms: int = Field(30_000, ge=10)
    bus_stream_maxlen: int = Field(100_000, ge=100)
    bus_max_pending: int = Field(
        1_000, ge=0, description="/readyz is red while a group has more pending (0: no bound)"
    )
    bus_max_lag: int = Field(
        10_000, ge=0, description="/readyz is red while a group lags more (0: no bound)"
    )
    bus_backlog_grace_seconds: float = Field(
        30.0, ge=0, description="how long pending/lag may stay past their bound first"
    )
    task_stale_seconds: float = Field(
        60.0, gt=0, description="a long-lived task without progress this long is wedged"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://host:port/db, rediss:// or unix:// URL")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("must name a host (redis://host:port/db)")
        return value

    @field_validator("*")
    @classmethod
    def _any_url(cls, value: object, info: ValidationInfo) -> object:
        """Every `*_url` setting of every service: a URL, no spaces or control characters."""
        if not (info.field_name or "").endswith("_url") or not isinstance(value, str):
            return value
        if not value.isprintable() or any(c.isspace() for c in value):
            raise ValueError("must be a URL, without spaces or control characters")
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if not parts.scheme or "://" not in value:
            raise ValueError("must be a URL with a scheme (scheme://host...)")
        return value

    @field_validator("api_key_sha256", "read_api_key_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("must be 64 hexadecimal characters (a sha256 digest)")
        return value

    @field_validator("api_key", "read_api_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    def api_key_digest(self) -> str | None:
        """The sha256 hex digest mutating routes compare against (None: no key configured)."""
        if self.api_key is not None:
            return hashlib.sha256(self.api_key.get_secret_value().encode()).hexdigest()
        return self.api_key_sha256

    def read_key_digest(self) -> str | None:
        """The sha256 hex digest of the read-only key (None: there is none)."""
        if self.read_api_key is not None:
            return hashlib.sha256(self.read_api_key.get_secret_value().encode()).hexdigest()
        return self.read_api_key_sha256

    def client_api_key(self) -> str | None:
        """The key this service presents when it calls another service: the API key when it
        has it in plain, else the read-only key (enough for the reads services make)."""
        for secret in (self.api_key, self.read_api_key):
            if secret is not None:
                return secret.get_secret_value()
        return None

    def secret_values(self) -> list[str]:
        """Every secret value, for the log redactor."""
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out


def derived_read_key(api_key: str) -> str:
    """A read-only key derived from the API key: `dalal run` gives it (in plain) to services
    that read from each other, so they never hold the key that can place orders."""
    return hmac.new(api_key.encode(), b"dalal read-only key", hashlib.sha256).hexdigest()


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build `cls` from the environment; raise ConfigError naming each bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Never echo the input: it may be a secret.
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            loc = err.get("loc")
            # a check across fields (a model validator) has no location: its message names
            # the variables itself
            problems.append(f"{env_name(str(loc[0]))}: {msg}" if loc else msg)
        message = "invalid configuration: " + "; ".join(problems)
        raise ConfigError(" ".join(message.split())) from None
