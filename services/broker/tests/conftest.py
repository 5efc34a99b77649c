"""kitesim and the broker as real processes, on a real Redis, talking through the official
kiteconnect client (the broker's adapter) over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared.messages import Envelope
from dalal_shared.streams import ORDERS_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, free_port, wait_until

KITE_KEY = "kitesim_key"
KITE_SECRET = "kitesim_secret_0123456789"
API_KEY = "broker-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Sim:
    def __init__(self, proc: ServiceProcess):
        self.proc = proc
        self.root = proc.base_url
        self._inspector: KiteConnect | None = None

    def control(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        r = httpx.request(method, f"{self.root}/_sim{path}", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def request_token(self) -> str:
        return str(self.control("/login")["request_token"])

    def client(self) -> KiteConnect:
        kite = KiteConnect(api_key=KITE_KEY, root=self.root, timeout=10)
        kite.generate_session(self.request_token(), api_secret=KITE_SECRET)
        return kite

    def orders_tagged(self, tag: str) -> list[dict[str, Any]]:
        """kitesim's order book rows with this tag, read like a user would: through one
        session (a new login per look would also spend Kite's rate budget the broker under
        test is using), again after a 429 from kitesim's own rate limit."""

        def look() -> tuple[list[dict[str, Any]]] | None:
            if self._inspector is None:
                self._inspector = self.client()
            try:
                return ([o for o in self._inspector.orders() if o.get("tag") == tag],)
            except kex.TokenException:  # a test expired the session: log in again
                self._inspector = None
            except kex.NetworkException:  # kitesim's rate limit: look again shortly
                pass
            return None

        return wait_until(look, timeout=30, interval=0.2, message=f"kitesim's orders ({tag})")[0]


@pytest.fixture(scope="module")
def kitesim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    port = free_port()
    proc = ServiceProcess(
        "dalal_kitesim",
        env={
            "DALAL_PORT": str(port),
            "DALAL_KITESIM_SESSION_SECONDS": "0",  # manual clock
            "DALAL_KITESIM_TOKEN_EXPIRY": "false",
            # orders priced far from the market on purpose (rest forever / cross at once): no
            # circuit limits (kitesim rejects those like Kite by default)
            "DALAL_KITESIM_CIRCUIT_BAND_PCT": "0",
            "DALAL_LOG_FORMAT": "json",
        },
        log_path=tmp_path_factory.mktemp("kitesim") / "kitesim.log",
        port=port,
    ).start()
    try:
        proc.wait_healthy(timeout=60)
        sim = Sim(proc)
        sim.control("/clock/advance", {"seconds": 60})  # into the first session
        yield sim
    finally:
        proc.stop()


class Broker:
    def __init__(self, proc: ServiceProcess):
        self.proc = proc
        self.url = proc.base_url

    def get(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", AUTH)  # reads need a key too (DALAL_READ_KEY_REQUIRED)
        return httpx.get(f"{self.url}{path}", timeout=30, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=json, headers=AUTH, timeout=60, **kw)

    def login(self, sim: Sim) -> None:
        resp = self.get("/session/callback", params={"request_token": sim.request_token()})
        assert resp.status_code == 200, resp.text
        wait_until(lambda: self.get("/session").json()["valid"], message="session valid")

    def order(self, coid: str) -> dict[str, Any]:
        return self.get(f"/orders/{coid}").json()


def _starter(kitesim: Sim, redis_url: str, processes: ServiceProcesses) -> Callable[..., Broker]:
    db = processes.log_dir / "broker.sqlite3"

    def start(wait_leader: bool = True, **env: str) -> Broker:
        proc = processes.start(
            "dalal_broker",
            {
                "DALAL_REDIS_URL": redis_url,
                "DALAL_API_KEY": API_KEY,
                "DALAL_KITE_ROOT_URL": kitesim.root,
                "DALAL_KITE_API_KEY": KITE_KEY,
                "DALAL_KITE_API_SECRET": KITE_SECRET,
                "DALAL_DATABASE_URL": f"sqlite:///{db}",
                "DALAL_ENFORCE_MARKET_HOURS": "false",
                "DALAL_LEASE_TTL_SECONDS": "2",
                "DALAL_POLL_INTERVAL_SECONDS": "0.3",
                "DALAL_BUS_BLOCK_MS": "100",
                "DALAL_SEND_BACKOFF_SECONDS": "0.1",
                "DALAL_LOG_FORMAT": "json",
                **env,
            },
            name="broker",
        )
        broker = Broker(proc)
        if wait_leader:
            wait_until(lambda: broker.get("/status").json()["leader"], message="broker leads")
        return broker

    return start


@pytest.fixture
def start_broker(kitesim: Sim, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """A fresh broker per call, on a clean Redis database (for restart and state tests)."""
    processes = ServiceProcesses(tmp_path)
    yield _starter(kitesim, redis_url, processes)
    processes.stop_all()
    httpx.delete(f"{kitesim.root}/_sim/faults", timeout=10)


@pytest.fixture(scope="module")
def shared_redis_url(redis_server_url: str) -> str:
    """A Redis database of its own for the module's shared broker (tests flush database 0)."""
    url = redis_server_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="module")
def shared_broker(
    kitesim: Sim, shared_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """One broker process shared by the tests that do not restart it."""
    processes = ServiceProcesses(tmp_path_factory.mktemp("broker"))
    yield _starter(kitesim, shared_redis_url, processes)()
    processes.stop_all()


@pytest.fixture
def broker(shared_broker: Broker, kitesim: Sim) -> Broker:
    """The shared broker, freshly logged in: as on real Kite, a login elsewhere (another test's
    broker) ends the previous access token."""
    shared_broker.login(kitesim)
    return shared_broker


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "kitesim" in request.fixturenames:  # tests without kitesim (paper) do not start it
        sim: Sim = request.getfixturevalue("kitesim")
        httpx.delete(f"{sim.root}/_sim/faults", timeout=10)


def events(redis_url: str, stream: str = ORDERS_EVENTS, coid: str | None = None) -> list[Envelope]:
    client = redis.Redis.from_url(redis_url)
    try:
        out = [Envelope.from_fields(f) for _i, f in client.xrange(stream)]
    finally:
        client.close()
    if coid is None:
        return out
    return [e for e in out if getattr(e.message, "client_order_id", None) == coid]


def system_events(redis_url: str) -> list[str]:
    return [e.type for e in events(redis_url, SYSTEM_EVENTS)]


def checksum(order_id: str, timestamp: str) -> str:
    return hashlib.sha256((order_id + timestamp + KITE_SECRET).encode()).hexdigest()


def metric(broker: Broker, name: str, **labels: str) -> float:
    """The value of one sample on /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in broker.get("/metrics").text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key.split("{")[0] != name:
            continue
        got = key[len(name) :].strip("{}")
        if ",".join(sorted(got.split(","))) == want or (not want and not got):
            return float(value)
    return 0.0
