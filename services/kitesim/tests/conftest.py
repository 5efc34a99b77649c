"""kitesim started for real (`dalal_kitesim.testing.Kitesim`: uvicorn on a free port in a
thread), a postback sink, and the official client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect

from dalal_kitesim.testing import API_KEY, API_SECRET, Kitesim
from dalal_shared.testing import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "kite"
__all__ = ["API_KEY", "API_SECRET", "FIXTURES", "Kitesim", "PostbackSink", "fixture_json"]


class PostbackSink:
    """A tiny HTTP server that records postback bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                sink.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/postback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def postbacks() -> Iterator[PostbackSink]:
    sink = PostbackSink()
    yield sink
    sink.close()


@pytest.fixture
def kitesim(postbacks: PostbackSink) -> Iterator[Kitesim]:
    server = Kitesim(kitesim_postback_url=postbacks.url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_kitesim() -> Iterator[Kitesim]:
    """One server for read-only tests of a module."""
    server = Kitesim().start()
    yield server
    server.stop()


@pytest.fixture
def kite(kitesim: Kitesim) -> KiteConnect:
    return kitesim.client()


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())
