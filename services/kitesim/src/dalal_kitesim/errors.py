"""Kite's error envelope: `{"status": "error", "message": ..., "data": null, "error_type": ...}`.

The official client raises `kiteconnect.exceptions.<error_type>` from it, so the type names and
HTTP codes below are Kite's own.
"""

from __future__ import annotations

from typing import Any


class KiteError(Exception):
    error_type = "GeneralException"
    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def envelope(self) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "data": None,
            "error_type": self.error_type,
        }


class TokenException(KiteError):
    error_type = "TokenException"
    status_code = 403


class InputException(KiteError):
    error_type = "InputException"
    status_code = 400


class OrderException(KiteError):
    error_type = "OrderException"
    status_code = 400


class PermissionException(KiteError):
    error_type = "PermissionException"
    status_code = 403


class NetworkException(KiteError):
    error_type = "NetworkException"
    status_code = 429


class GeneralException(KiteError):
    error_type = "GeneralException"
    status_code = 500


class DataException(KiteError):
    error_type = "DataException"
    status_code = 502
