"""kitesim started for real (uvicorn on a free port in a thread) and the official client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from kiteconnect import KiteConnect

from dalal_kitesim.app import build_app
from dalal_kitesim.config import KitesimSettings
from dalal_shared.testing import free_port, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "kite"
API_KEY = "kitesim_key"
API_SECRET = "kitesim_secret_0123456789"


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


class Kitesim:
    def __init__(self, **overrides: Any):
        self.port = free_port()
        settings = KitesimSettings(
            port=self.port,
            kitesim_session_seconds=0,  # manual clock: tests move time explicitly
            kitesim_rate_quote_per_second=0,
            kitesim_rate_historical_per_second=0,
            kitesim_rate_orders_per_second=0,
            kitesim_rate_orders_per_minute=0,
            kitesim_rate_other_per_second=0,
            **overrides,
        )
        self.app = build_app(settings)
        self.sim = self.app.state.sim
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_root(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Kitesim:
        self.thread.start()
        wait_until(
            lambda: httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200,
            message="kitesim up",
        )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def control(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        r = httpx.request(method, f"{self.root}/_sim{path}", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def advance(self, **body: Any) -> Any:
        return self.control("/clock/advance", body)

    def request_token(self) -> str:
        r = httpx.post(
            f"{self.root}/connect/login",
            data={"api_key": API_KEY, "user_id": "KS0001", "password": "x"},
            follow_redirects=False,
        )
        assert r.status_code == 302
        return httpx.URL(r.headers["location"]).params["request_token"]

    def client(self) -> KiteConnect:
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=10)
        kite.generate_session(self.request_token(), api_secret=API_SECRET)
        return kite


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
