"""structlog set-up: JSON in containers, readable on a terminal, secrets redacted everywhere.

Redaction works on two levels, both applied to structlog events and to stdlib records (uvicorn,
httpx, celery) alike:

* by key: any field whose name looks like a credential (`access_token`, `api_secret`, ...),
* by value: every registered secret value (and `name=value` query parameters of credential
  names) is masked wherever it appears inside a string.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import structlog

MASK = "***"
LOG_FILE_MODE = 0o600  # logs name orders, positions and the account: owner only
PRIVATE_UMASK = 0o077  # what `dalal run` creates under var/ is its user's alone
_SENSITIVE_KEY = re.compile(
    r"(token|secret|password|passwd|api_?key|authorization|checksum|cookie|credential)",
    re.IGNORECASE,
)
_SENSITIVE_PARAM = re.compile(
    r"(?P<name>(?:access_token|request_token|refresh_token|api_secret|api_key|enctoken|password"
    r"|checksum)[\"']?\s*[=:]\s*[\"']?)(?P<value>[^&\s\"',;}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<name>(?:Bearer|token)\s+)(?P<value>[A-Za-z0-9._~+/:=-]{8,})")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Mask these values wherever they appear in a log line from now on."""
    with _secrets_lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets.add(value)


def redact_text(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _SENSITIVE_PARAM.sub(lambda m: m.group("name") + MASK, text)
    return _BEARER.sub(lambda m: m.group("name") + MASK, text)


def _redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SENSITIVE_KEY.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(None, v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key in list(event_dict):
        if key in ("event", "exception", "exc_info", "stack"):
            if isinstance(event_dict[key], str):
                event_dict[key] = redact_text(event_dict[key])
            continue
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _final_redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    # after format_exc_info the traceback is text and must be scrubbed too
    for key in ("exception", "event"):
        if isinstance(event_dict.get(key), str):
            event_dict[key] = redact_text(event_dict[key])
    return event_dict


class _StdlibArgsRedactor(logging.Filter):
    """Fold %-args into the message and redact it, for records that bypass structlog."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # a structlog event: redacted by its processors
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        return True


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str] = (),
    stream: Any = None,
) -> None:
    """Configure structlog and the stdlib root logger for one process."""
    register_secret(*secrets)
    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        lambda _l, _n, ev: {**ev, "service": service} if "service" not in ev else ev,
        redact_processor,
    ]
    renderer: Any
    if json_output:
        renderer = structlog.processors.JSONRenderer()
        shared_tail: list[Any] = [structlog.processors.format_exc_info, _final_redact]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        shared_tail = [_final_redact]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *shared_tail,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_StdlibArgsRedactor())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("httpx").setLevel("WARNING")
    logging.getLogger("alembic").setLevel("WARNING")  # one line per plugin at every start
    logging.captureWarnings(True)  # Python warnings (Celery's root warning...) as log lines


def open_log_file(path: Path) -> BinaryIO:
    """Open `path` for appending, created with mode 0600 (an existing file is tightened to it),
    its folder created with mode 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
    with contextlib.suppress(OSError):  # not ours to change: keep writing anyway
        if os.fstat(fd).st_mode & 0o777 != LOG_FILE_MODE:
            os.fchmod(fd, LOG_FILE_MODE)
    return os.fdopen(fd, "ab")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
