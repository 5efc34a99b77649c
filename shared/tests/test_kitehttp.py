"""The official client on `KiteHttpSession` (`dalal_shared.kitehttp`) over real HTTP: the proxy
and CA-bundle settings of the environment still apply (read once per host), and a `.netrc`
entry never replaces Kite's `Authorization: token ...` header."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from dalal_shared.embedded import free_port
from dalal_shared.kitehttp import KiteHttpSession, kite_client


class _Recorder(BaseHTTPRequestHandler):
    """Answers any POST as Kite answers a placed order, and records the request line and the
    Authorization header (as a forward proxy sees an absolute URL)."""

    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"status": "success", "data": {"order_id": "250101000000001"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def place(root: str) -> str:
    kite = kite_client("key", root=root, timeout=5)
    kite.set_access_token("tok")
    return str(
        kite.place_order(
            variety="regular",
            exchange="NSE",
            tradingsymbol="INFY",
            transaction_type="BUY",
            quantity=1,
            product="CNC",
            order_type="MARKET",
        )
    )


def test_a_proxy_in_the_environment_carries_the_calls(
    server: tuple[str, list[tuple[str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, seen = server
    monkeypatch.setenv("HTTP_PROXY", proxy)
    assert place("http://kite.invalid:8000") == "250101000000001"
    # the proxy was asked for Kite's absolute URL, with Kite's token header
    assert seen == [("http://kite.invalid:8000/orders/regular", "token key:tok")]


def test_no_proxy_sends_its_hosts_direct(
    server: tuple[str, list[tuple[str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, seen = server
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(requests.ConnectionError):
        place(root)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert place(root) == "250101000000001"
    assert seen == [("/orders/regular", "token key:tok")]


def test_a_netrc_entry_never_replaces_kites_token(
    server: tuple[str, list[tuple[str, str | None]]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    root, seen = server
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert place(root) == "250101000000001"
    assert seen[-1][1] == "token key:tok"
    # requests' own session would have sent the .netrc credentials instead
    requests.Session().post(f"{root}/orders/regular", headers={"Authorization": "token key:tok"})
    assert seen[-1][1] is not None and seen[-1][1].startswith("Basic ")


def test_the_environments_ca_bundle_is_used_unless_the_call_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = KiteHttpSession()
    url = "https://api.kite.trade/orders/regular"
    assert session.merge_environment_settings(url, {}, None, True, None)["verify"] == str(bundle)
    assert session.merge_environment_settings(url, {}, None, False, None)["verify"] is False
    plain = requests.Session()  # the same answers as requests' own reading of the environment
    for verify in (True, False, None):
        assert session.merge_environment_settings(
            url, {}, None, verify, None
        ) == plain.merge_environment_settings(url, {}, None, verify, None)


FIXTURES = Path(__file__).parent / "fixtures" / "kite"


@pytest.mark.parametrize("name", ["orders.json", "trades.json"])
def test_listed_orders_and_trades_come_out_as_the_official_client_makes_them(name: str) -> None:
    """Kite's recorded order and trade books (and one order of them alone, as `order_history`
    answers) through `DalalKite._format_response` equal what `KiteConnect`'s own makes of them:
    the same keys, the timestamps the same naive `datetime`s, the rest untouched."""
    from kiteconnect import KiteConnect

    from dalal_shared.kitehttp import DalalKite

    data = json.loads((FIXTURES / name).read_text())["data"]
    ours = DalalKite("key")._format_response(json.loads(json.dumps(data)))
    theirs = KiteConnect("key")._format_response(json.loads(json.dumps(data)))
    assert ours == theirs
    assert any(isinstance(v, datetime) for item in ours for v in item.values())
    one = DalalKite("key")._format_response(json.loads(json.dumps(data[0])))
    assert one == KiteConnect("key")._format_response(json.loads(json.dumps(data[0])))


@pytest.mark.parametrize(
    "text",
    [
        "2021-05-31 09:18:57",  # Kite's shape
        "2024-02-29 23:59:59",
        "2023-02-29 09:15:00",  # no such day: dateutil's error, as the official client's
        "2021-05-31 24:00:00",  # no such hour
        "2021-05-31T09:18:57",  # another shape of 19 characters: dateutil reads it
        "31-05-2021 09:18:57",
        "2021-05-31 09:18:5x",
        "२०२१-05-31 09:18:57",  # digits that are not ASCII
    ],
)
def test_a_kite_timestamp_is_parsed_as_dateutil_parses_it(text: str) -> None:
    from dalal_shared.kitehttp import parse_kite_time

    assert_parsed_as_dateutil_parses(parse_kite_time, text)


def assert_parsed_as_dateutil_parses(parse: Callable[[str], datetime], text: str) -> None:
    """`parse(text)` is `dateutil.parser.parse(text)` (the same value, zone and `repr`), or
    fails with the same error."""
    import dateutil.parser

    try:
        expected = dateutil.parser.parse(text)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            parse(text)
        return
    got = parse(text)
    assert (got, got.tzinfo) == (expected, expected.tzinfo)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("name", ["historical_minute.json", "historical_oi.json"])
def test_candles_come_out_as_the_official_client_makes_them(name: str) -> None:
    """Kite's recorded candles (with and without open interest) through `DalalKite` equal the
    official client's, their times in the same zone object (`repr` too)."""
    from kiteconnect import KiteConnect

    from dalal_shared.kitehttp import DalalKite

    data = json.loads((FIXTURES / name).read_text())["data"]
    ours = DalalKite("key")._format_historical(json.loads(json.dumps(data)))
    theirs = KiteConnect("key")._format_historical(json.loads(json.dumps(data)))
    assert ours == theirs and repr(ours) == repr(theirs)
    assert all(c["date"].utcoffset() is not None for c in ours)


@pytest.mark.parametrize(
    "text",
    [
        "2017-12-15T09:15:00+0530",  # Kite's shape
        "2017-12-15T09:15:00-0400",
        "2017-12-15T09:15:00+0000",  # dateutil's UTC zone
        "2017-12-15T25:15:00+0530",  # no such hour: dateutil's error
        "2017-12-15 09:15:00+0530",
        "2017-12-15T09:15:00+05:30",
        "2017-12-15T09:15:00+2500",
    ],
)
def test_a_candle_time_is_parsed_as_dateutil_parses_it(text: str) -> None:
    from dalal_shared.kitehttp import parse_candle_time

    assert_parsed_as_dateutil_parses(parse_candle_time, text)
