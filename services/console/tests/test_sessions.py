"""Console sessions: signed cookies that expire, CSRF tokens bound to one session."""

from __future__ import annotations

from dalal_console.sessions import SessionSigner

KEY = "session-test-key-0123456789"


def test_a_cookie_is_accepted_until_it_expires_and_never_when_altered() -> None:
    signer = SessionSigner(KEY, lifetime_seconds=3600)
    cookie, session = signer.issue(1_000_000.0)
    assert signer.verify(cookie, 1_000_000.0 + 3599) == session
    assert signer.verify(cookie, 1_000_000.0 + 3600) is None
    issued, nonce, sig = cookie.split(".")
    assert signer.verify(f"{int(issued) + 9999}.{nonce}.{sig}", 1_000_000.0) is None
    assert signer.verify(f"{issued}.{nonce}x.{sig}", 1_000_000.0) is None
    for junk in (None, "", "a.b", "x.y.z", "1.2.3.4", "9" * 300):
        assert signer.verify(junk, 1_000_000.0) is None


def test_another_key_signs_other_cookies() -> None:
    cookie, _ = SessionSigner(KEY, lifetime_seconds=60).issue(10.0)
    assert SessionSigner(KEY + "-rotated", lifetime_seconds=60).verify(cookie, 10.0) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(KEY, lifetime_seconds=60)
    _, one = signer.issue(10.0)
    _, two = signer.issue(10.0)
    assert signer.csrf_ok(one, signer.csrf_token(one))
    assert not signer.csrf_ok(one, signer.csrf_token(two))
    assert not signer.csrf_ok(one, None)
    assert signer.key_matches(KEY) and not signer.key_matches(KEY[:-1])
