"""Exceptions that say what the caller should do.

`TemporaryError` may be retried (after a check that the first attempt did not take effect);
`PermanentError` must not be. Both carry a stable machine-readable `code` that the HTTP layer
returns to clients as `{"error": code}`.
"""

from __future__ import annotations


class DalalError(Exception):
    """Base of every error Dalal raises on purpose."""

    code: str = "internal_error"
    status_code: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, object] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.extra: dict[str, object] = extra or {}  # more fields of the HTTP error body
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class PermanentError(DalalError):
    """Retrying will not help: bad input, a rejected order, a missing resource."""

    code = "bad_request"
    status_code = 400


class NotFoundError(PermanentError):
    code = "not_found"
    status_code = 404


class ConflictError(PermanentError):
    code = "conflict"
    status_code = 409


class TemporaryError(DalalError):
    """Retrying may help: network trouble, 429, 5xx, a dependency not ready yet."""

    code = "temporarily_unavailable"
    status_code = 503


class ConfigError(DalalError):
    """The configuration is unusable; the message names the variable."""

    code = "config_error"
