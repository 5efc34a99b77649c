"""Kite postbacks: the checksum is sha256(order_id + order_timestamp + api_secret)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from dalal_shared.errors import PermanentError


class BadPostback(PermanentError):
    code = "bad_checksum"
    status_code = 401


def verify_postback(payload: dict[str, Any], api_secret: str) -> None:
    try:
        order_id = str(payload["order_id"])
        timestamp = str(payload["order_timestamp"])
        checksum = str(payload["checksum"])
    except KeyError as exc:
        raise BadPostback(f"postback without {exc.args[0]}") from None
    expected = hashlib.sha256(
        (order_id + timestamp + api_secret).encode("utf-8", "replace")
    ).hexdigest()
    # bytes, not str: compare_digest refuses non-ASCII text, and a forged checksum may be any
    if not hmac.compare_digest(expected.encode(), checksum.encode("utf-8", "replace")):
        raise BadPostback("postback checksum does not match")
