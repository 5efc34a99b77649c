"""Secrets never reach a log line, whichever logger writes it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dalal_shared.logging import configure_logging, get_logger

ACCESS = "acc3ssTok3nValue9876"
SECRET = "apiS3cretValue12345"
REQUEST = "reqTok3nABCDEF123"


@pytest.fixture
def captured() -> io.StringIO:
    out = io.StringIO()
    configure_logging("test", fmt="json", secrets=[SECRET], stream=out)
    yield out
    logging.getLogger().handlers.clear()


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_sensitive_keys_are_masked(captured: io.StringIO) -> None:
    get_logger("t").info(
        "session", access_token=ACCESS, user_id="AB1234", nested={"api_secret": "x" * 12, "ok": 1}
    )
    text = captured.getvalue()
    assert ACCESS not in text and "x" * 12 not in text
    line = _lines(captured)[0]
    assert line["user_id"] == "AB1234"
    assert line["nested"]["ok"] == 1


def test_registered_secret_values_are_masked_anywhere(captured: io.StringIO) -> None:
    get_logger("t").info(f"calling kite with {SECRET} inside", detail=[f"a{SECRET}b"])
    assert SECRET not in captured.getvalue()


def test_credentials_in_urls_are_masked(captured: io.StringIO) -> None:
    url = f"/session/callback?request_token={REQUEST}&status=success&access_token={ACCESS}"
    get_logger("t").info("request", url=url)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/1.1" %d', "1.2.3.4", "GET", url, 200)
    text = captured.getvalue()
    assert REQUEST not in text and ACCESS not in text
    assert "status=success" in text


def test_bearer_headers_and_exceptions_are_masked(captured: io.StringIO) -> None:
    log = get_logger("t")
    log.info("headers", header=f"Bearer {ACCESS}")
    try:
        raise RuntimeError(f"kite said no for token {ACCESS} and {SECRET}")
    except RuntimeError:
        log.exception("failed")
        logging.getLogger("stdlib").exception("stdlib failed %s", SECRET)
    text = captured.getvalue()
    assert ACCESS not in text and SECRET not in text
    assert any("exception" in line for line in _lines(captured))


def test_log_files_are_created_private_and_old_ones_tightened(tmp_path) -> None:
    from dalal_shared.logging import open_log_file

    fresh = tmp_path / "log" / "broker.log"
    with open_log_file(fresh) as fh:
        fh.write(b"line\n")
    old = tmp_path / "log" / "data.log"
    old.write_bytes(b"before\n")
    old.chmod(0o644)
    with open_log_file(old) as fh:
        fh.write(b"after\n")
    assert oct(fresh.stat().st_mode & 0o777) == "0o600"
    assert oct(old.stat().st_mode & 0o777) == "0o600"
    assert old.read_bytes() == b"before\nafter\n"  # appended, not truncated
