"""Chaos run of the order path (issue 14): every command placed exactly once or rejected with a
reason, every fill in the ledger, under SIGKILLs and Kite faults.

Real processes, no mocks. The harness starts the stack the way `dalal run` does in sim mode
(`dalal_shared.stack.service_specs`: kitesim, broker, portfolio, data, engine, with their own
SQLite files under one var/ directory, on free ports; the Celery workers are left out) over
its own redis-server (AOF on), logs the broker in to kitesim, and then, while it sends orders:

* half of them over the broker's `POST /orders`, half as `PlaceOrder` on `orders.commands`
  (client order ids `cx<seed>-<n>`, deterministic), MIS market orders on RELIANCE, TCS, INFY
  and SBIN, a few CNC sells without holdings (Kite rejects them);
* the engine trades `sma_cross` (1/2 bars, MIS) on the 1-minute bars of TCS and INFY that the
  data service builds from kitesim's ticks (data runs too, and is never killed);
* SIGKILLs broker, engine and portfolio at random points (each restarted 0.2-2 s later), and
  the Redis server (restarted on the same port; the AOF keeps the data);
* injects kitesim faults through its control API: 429 and 5xx on order placement,
  timeout-after-accept (the order is placed, the reply comes after the broker's timeout),
  5xx on the next non-order calls (order trades, order book, trade book), latency, RMS
  rejections;
* drives kitesim's manual clock (so market orders fill) inside one session, so kitesim's order
  book and trade book hold the whole run.

A child that exits by itself (e.g. exit 3 while Redis is down) is restarted too, and counted.
Afterwards the faults are cleared, the kills stop, and the harness waits (polling, with a
deadline) until the checks hold or the deadline passes:

(a) every command (the harness's, and every intent the engine recorded) is at kitesim exactly
    once (order book, by tag) or was rejected with a reason (journal row or `OrderRejected`);
(b) nothing sits in a `dlq.*` stream without a matching rejection event;
(c) the ledger's fills equal kitesim's trade book (trade id, quantity, price);
(d) the ledger's open positions equal kitesim's net positions;
(e) `/reconcile` is clean on the broker and on the portfolio.

Figures go to stdout as a table and to `<workdir>/chaos-figures.json`; every failure comes with
the lines of the services' logs that name its order id.

    .venv/bin/python scripts/chaos.py --orders 600 --kills 105 --redis-kills 4
    .venv/bin/python scripts/chaos.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared import settings as dalal_settings
from dalal_shared.embedded import EmbeddedRedis, die_with_parent, free_port
from dalal_shared.httpapp import hash_api_key
from dalal_shared.messages import (
    CancelOrder,
    Envelope,
    ModifyOrder,
    OrderCancelled,
    OrderRejected,
    PlaceOrder,
)
from dalal_shared.stack import StackSettings, service_specs
from dalal_shared.streams import ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.supervisor import ServiceSpec
from dalal_shared.timeutil import IST

KITE_KEY = "kitesim_key"
KITE_SECRET = "kitesim_secret_0123456789"  # noqa: S105 - kitesim's public default
VICTIMS = ("broker", "engine", "portfolio")
HARNESS_SYMBOLS = ("RELIANCE", "TCS", "INFY", "SBIN")
ENGINE_SYMBOLS = ("TCS", "INFY")  # 15-minute bars at kitesim: ticks often enough to fill
KITE_TIMEOUT_SECONDS = 7.0  # the broker's default DALAL_KITE_TIMEOUT_SECONDS
HTTP_RETRY_SECONDS = 300  # a client retries POST /orders (same id) this long before giving up
LAST_SIM_TIME = (14, 50)  # the clock stops here: before MIS square-off, inside one session
STRATEGIES = """
strategies:
  - name: chaos
    strategy: sma_cross
    interval: minute
    universe: [{symbols}]
    product: MIS
    params: {{fast_bars: 1, slow_bars: 2, atr_bars: 1, fixed_quantity: 2}}
    risk:
      enforce_market_hours: false
      max_orders_per_minute: 200
      max_open_positions: 10
      max_daily_loss_rupees: 1000000000
"""
# (name, control path, body): one is drawn at each fault injection
FAULTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("orders_429", "/faults", {"kind": "status", "status": 429, "route": "orders"}),
    ("orders_500", "/faults", {"kind": "status", "status": 500, "route": "orders"}),
    ("orders_502_html", "/faults", {"kind": "status", "status": 502, "route": "orders",
                                    "html": True}),
    ("orders_503", "/faults", {"kind": "status", "status": 503, "route": "orders"}),
    (
        "timeout_after_accept",
        "/faults",
        {"kind": "timeout_after_accept", "seconds": KITE_TIMEOUT_SECONDS + 1.5, "route": "orders"},
    ),
    # the next non-order Kite calls: order_trades() after an update, the order book poll, trades()
    ("order_trades_502", "/faults", {"kind": "status", "status": 502, "route": "other",
                                     "count": 6}),
    ("other_429", "/faults", {"kind": "status", "status": 429, "route": "other", "count": 4}),
    ("latency_3s", "/faults", {"kind": "latency", "seconds": 3.0}),
    ("rms_reject", "/orders/reject", {"count": 1, "message": "RMS: rejected by the chaos run"}),
)  # fmt: skip


@dataclass
class ChaosConfig:
    orders: int = 60
    kills: int = 15
    redis_kills: int = 1
    faults: int = 12
    seed: int = 1
    workdir: Path | None = None
    engine: bool = True
    orders_per_second: float = 1.5
    kill_gap_seconds: float = 4.0
    # kitesim's manual clock: market seconds per step (a step every 0.5 s at most)
    clock_step_seconds: float = 4.0
    settle_seconds: float = 240.0
    say: Callable[[str], None] = print


# ----------------------------------------------------------------------------- processes


@dataclass
class Child:
    spec: ServiceSpec
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    busy: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    def spawn(self) -> None:
        if self.log is None:
            self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", self.spec.module],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        if not self.alive():
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log is not None:
            self.log.close()
            self.log = None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # what is polled may be down for a while
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last error {last!r}")


class Stack:
    """Redis + kitesim + broker + portfolio + engine, as `dalal run` starts them in sim mode."""

    def __init__(self, workdir: Path, *, engine: bool, say: Callable[[str], None]):
        self.workdir = workdir
        self.var = workdir / "var"
        self.say = say
        # the engine trades on the bars the data service builds from kitesim's ticks
        names = ["kitesim", "broker", "portfolio", *(["data", "engine"] if engine else [])]
        ports = {f"{n}_port": free_port() for n in ("kitesim", "broker", "data", "portfolio")}
        self.settings = StackSettings(
            var_dir=self.var,
            redis_port=free_port(),
            engine_port=free_port(),
            **ports,
        )
        self.api_key = self.settings.local_api_key(create=True) or ""
        self.redis = EmbeddedRedis(self.var / "redis", self.settings.redis_port, appendonly=True)
        common = {  # as `dalal run` (dalal_shared.cli.run) gives every child
            "DALAL_REDIS_URL": self.settings.redis_url,
            "DALAL_API_KEY_SHA256": hash_api_key(self.api_key),
            "DALAL_LOG_FORMAT": "json",
        }
        read_key = getattr(dalal_settings, "derived_read_key", None)
        if read_key is not None:  # what services present to each other's read routes
            common["DALAL_READ_API_KEY"] = read_key(self.api_key)
        extra = {
            # a manual clock the harness drives: the run stays inside one session, so kitesim's
            # order book and trade book (reset at each open) hold every order of the run
            "kitesim": {
                "DALAL_KITESIM_SESSION_SECONDS": "0",
                "DALAL_KITESIM_TOKEN_EXPIRY": "false",
            },
            "engine": {
                "DALAL_STRATEGIES_FILE": str(workdir / "strategies.yaml"),
                # where the engine reads the kill switch, the session and the equity
                "DALAL_BROKER_URL": self.settings.url_of("broker"),
                "DALAL_PORTFOLIO_URL": self.settings.url_of("portfolio"),
            },
        }
        (self.var / "log").mkdir(parents=True, exist_ok=True)
        (workdir / "strategies.yaml").write_text(
            STRATEGIES.format(symbols=", ".join(ENGINE_SYMBOLS))
        )
        self.children: dict[str, Child] = {}
        for spec in service_specs(self.settings, names):
            if spec.port is None:
                continue  # the Celery workers play no part in the order path
            env = {**os.environ, **common, **spec.env, **extra.get(spec.name, {})}
            env["DALAL_PORT"] = str(spec.port)
            self.children[spec.name] = Child(spec, env, self.var / "log" / f"{spec.name}.log")
        self._kite: KiteConnect | None = None
        self._spawns: queue.Queue[Any] = queue.Queue()
        self.spawner = threading.Thread(target=self._spawner, name="spawner", daemon=True)

    # -- lifecycle
    def start(self) -> None:
        self.say(f"redis {self.settings.redis_url}; var {self.var}")
        self.spawner.start()
        self.in_spawner(self.redis.start)
        for child in self.children.values():
            self.spawn(child)
        for child in self.children.values():
            self.wait_started(child)
        self.control("/clock/advance", {"seconds": 60})  # into the first session
        token = self.control("/login", {})["request_token"]
        r = httpx.get(
            f"{self.url('broker')}/session/callback",
            params={"request_token": token},
            headers=self.auth,
            timeout=60,
        )
        if r.status_code != 200:
            raise RuntimeError(f"broker login failed: {r.status_code} {r.text[:300]}")
        wait_for(lambda: self.get("broker", "/session")["valid"], 60, "broker session valid")
        wait_for(lambda: self.get("broker", "/status")["leader"], 60, "broker leads")
        if "engine" in self.children:
            r = httpx.post(f"{self.url('engine')}/engine/start", headers=self.auth, timeout=30)
            r.raise_for_status()

    def wait_started(self, child: Child, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not child.healthy():
            if child.process is not None and child.process.poll() is not None:
                tail = child.log_path.read_text(errors="replace").splitlines()[-12:]
                raise RuntimeError(
                    f"{child.name} exited at start with {child.process.returncode}:\n"
                    + "\n".join(tail)
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not healthy after {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.redis.stop()
        if self.spawner.is_alive():
            self._spawns.put(None)
            self.spawner.join(10)

    def kill_redis(self) -> None:
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait()

    def restart_redis(self) -> None:
        self.redis = EmbeddedRedis(self.var / "redis", self.settings.redis_port, appendonly=True)
        wait_for(self._start_redis, 60, "redis restarted on its port", interval=0.5)

    def _start_redis(self) -> bool:
        self.in_spawner(self.redis.start)
        return True

    def spawn(self, child: Child) -> None:
        self.in_spawner(child.spawn)

    def in_spawner(self, fn: Callable[[], None]) -> None:
        """Run `fn` (a process start) on the one thread that lives as long as the stack: a
        child's parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that started it
        ends, so a child started from a short-lived thread would be stopped with it."""
        done: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        self._spawns.put((fn, done))
        error = done.get()
        if error is not None:
            raise error

    def _spawner(self) -> None:
        while True:
            item = self._spawns.get()
            if item is None:
                return
            fn, done = item
            try:
                fn()
                done.put(None)
            except BaseException as exc:
                done.put(exc)

    # -- access
    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def url(self, name: str) -> str:
        return self.children[name].url

    def get(self, name: str, path: str, **params: Any) -> Any:
        r = httpx.get(
            f"{self.url(name)}{path}", params=params or None, headers=self.auth, timeout=30
        )
        r.raise_for_status()
        return r.json()

    def control(self, path: str, body: dict[str, Any], method: str = "POST") -> Any:
        r = httpx.request(
            method, f"{self.url('kitesim')}/_sim{path}", json=body, headers=self.auth, timeout=30
        )
        if r.status_code != 200:
            raise RuntimeError(f"kitesim control {path}: {r.status_code} {r.text[:200]}")
        return r.json()

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2
        )

    def kite(self) -> KiteConnect:
        """The harness's own session at kitesim (what a user sees in Kite's web pages)."""
        if self._kite is None:
            kite = KiteConnect(api_key=KITE_KEY, root=self.url("kitesim"), timeout=20)
            kite.generate_session(self.control("/login", {})["request_token"], KITE_SECRET)
            self._kite = kite
        return self._kite

    def kite_call(self, what: Callable[[KiteConnect], Any]) -> Any:
        def once() -> tuple[Any]:
            try:
                return (what(self.kite()),)
            except kex.TokenException:
                self._kite = None
                raise

        return wait_for(once, 60, "kitesim answers", interval=0.3)[0]


# ----------------------------------------------------------------------------- the run


@dataclass
class Sent:
    command: PlaceOrder
    via: str  # "http" or "stream"
    answer: str = ""  # http: the journal status answered, or "unanswered"; stream: "published"
    attempts: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # what the failed attempts met


@dataclass
class Figures:
    orders_sent: int = 0
    orders_http: int = 0
    orders_stream: int = 0
    engine_commands: int = 0
    minute_bars: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    redis_kills: int = 0
    self_exits: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    placed: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    cancelled_unplaced: int = 0
    lost: int = 0
    lost_never_acknowledged: int = 0  # of which: HTTP orders the broker never answered 200
    http_attempt_errors: dict[str, int] = field(default_factory=dict)
    duplicated: int = 0
    http_unanswered: int = 0
    kite_orders_by_status: dict[str, int] = field(default_factory=dict)
    kite_trades: int = 0
    ledger_trades: int = 0
    trade_mismatches: int = 0
    position_mismatches: int = 0
    dlq_entries: int = 0
    dlq_without_event: int = 0
    reconcile_breaks_broker: int = 0
    reconcile_breaks_portfolio: int = 0
    chaos_seconds: float = 0.0
    settle_seconds: float = 0.0
    converged: bool = False

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.http_unanswered == 0
            and self.trade_mismatches == 0
            and self.position_mismatches == 0
            and self.dlq_without_event == 0
            and self.reconcile_breaks_broker == 0
            and self.reconcile_breaks_portfolio == 0
        )


class Chaos:
    def __init__(self, config: ChaosConfig, stack: Stack):
        self.config = config
        self.stack = stack
        self.rng = random.Random(config.seed)
        self.figures = Figures()
        self.sent: dict[str, Sent] = {}
        self.stop_chaos = threading.Event()
        self.sending_done = threading.Event()
        self.kills_done = threading.Event()
        self.lock = threading.Lock()
        self.errors: list[str] = []

    # -- threads
    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a harness thread must not die silently
                self.errors.append(f"{name}: {exc!r}")
                self.config.say(f"harness thread {name} failed: {exc!r}")

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t

    def commands(self) -> list[PlaceOrder]:
        rng = random.Random(self.config.seed * 7919)
        out = []
        for n in range(self.config.orders):
            coid = f"cx{self.config.seed}-{n:05d}"
            if rng.random() < 0.05:  # Kite refuses a delivery sell without holdings
                out.append(
                    PlaceOrder(
                        client_order_id=coid,
                        symbol=rng.choice(HARNESS_SYMBOLS),
                        side="SELL",
                        quantity=1,
                        product="CNC",
                    )
                )
                continue
            out.append(
                PlaceOrder(
                    client_order_id=coid,
                    symbol=rng.choice(HARNESS_SYMBOLS),
                    side=rng.choice(("BUY", "SELL")),
                    quantity=rng.randint(1, 5),
                    product="MIS",
                )
            )
        return out

    def sender(self) -> None:
        pool: list[threading.Thread] = []
        gap = 1.0 / self.config.orders_per_second
        start = time.monotonic()
        for n, cmd in enumerate(self.commands()):
            due = start + n * gap
            time.sleep(max(0.0, due - time.monotonic()))
            via = "http" if n % 2 == 0 else "stream"
            sent = Sent(cmd, via)
            with self.lock:
                self.sent[cmd.client_order_id] = sent
            if via == "http":
                pool.append(self._thread(lambda s=sent: self._post(s), f"http-{n}"))
            else:
                self._publish(sent)
            pool = [t for t in pool if t.is_alive()]
        for t in pool:
            t.join()
        self.sending_done.set()

    def _post(self, sent: Sent) -> None:
        """POST /orders until the broker answers (a user retries the same id on errors)."""
        body = sent.command.model_dump(mode="json", exclude_none=True)
        deadline = time.monotonic() + HTTP_RETRY_SECONDS
        while time.monotonic() < deadline:
            sent.attempts += 1
            try:
                r = httpx.post(
                    f"{self.stack.url('broker')}/orders",
                    json=body,
                    headers=self.stack.auth,
                    timeout=40,
                )
                if r.status_code == 200:
                    sent.answer = str(r.json().get("status"))
                    return
                code = _error_code(r)
                if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                    sent.answer = f"http_{r.status_code}:{code}"
                    return
                sent.errors[f"{r.status_code}:{code}"] += 1
            except httpx.HTTPError as exc:
                sent.errors[type(exc).__name__] += 1
            time.sleep(0.5)
        sent.answer = "unanswered"

    def _publish(self, sent: Sent) -> None:
        fields = Envelope.wrap(sent.command, source="chaos").to_fields()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            sent.attempts += 1
            try:
                client = self.stack.redis_client()
                try:
                    client.xadd(ORDERS_COMMANDS, fields, maxlen=100_000, approximate=True)
                finally:
                    client.close()
                sent.answer = "published"
                return
            except redis.RedisError:
                time.sleep(0.3)
        sent.answer = "unpublished"

    def monkey(self) -> None:
        """SIGKILLs at random points. Most kills wait until the victim is up and some way into
        its work; about a third start a crash loop: the same victim killed again 1-5 s after
        each restart, before it is healthy, 2-4 times (a message it holds is delivered again
        and again without ever being acknowledged)."""
        cfg = self.config
        victims = [v for v in VICTIMS if v in self.stack.children]
        plan = [victims[i % len(victims)] for i in range(cfg.kills)]
        self.rng.shuffle(plan)
        runs: list[list[str]] = []
        while plan:
            victim = plan.pop()
            run = [victim]
            if self.rng.random() < 0.35:
                loop = self.rng.randint(2, 4)
                for other in [v for v in plan if v == victim][: loop - 1]:
                    plan.remove(other)
                    run.append(other)
            runs.append(run)
        for k in range(cfg.redis_kills):  # spread the Redis kills over the run
            runs.insert(int((k + 0.5) * len(runs) / cfg.redis_kills) + k, ["redis"])
        for run in runs:
            time.sleep(self.rng.uniform(0.5, 1.5) * cfg.kill_gap_seconds)
            if run == ["redis"]:
                self.stack.kill_redis()
                self.figures.redis_kills += 1
                cfg.say(f"[{self._t()}] SIGKILL redis ({self.figures.redis_kills})")
                time.sleep(self.rng.uniform(0.5, 3.0))
                self.stack.restart_redis()
                continue
            child = self.stack.children[run[0]]
            # a random point of its life: wait until it is up, then some way into its work
            with contextlib.suppress(TimeoutError):
                wait_for(child.healthy, 60, f"{child.name} healthy before its kill", interval=0.3)
            time.sleep(self.rng.uniform(0.0, cfg.kill_gap_seconds))
            for n, victim in enumerate(run):
                if n:  # a crash loop: again, during its start-up and recovery
                    time.sleep(self.rng.uniform(1.0, 5.0))
                with child.busy:
                    child.kill()
                    self.figures.kills[victim] = self.figures.kills.get(victim, 0) + 1
                    loop = f", crash loop {n + 1}/{len(run)}" if len(run) > 1 else ""
                    cfg.say(f"[{self._t()}] SIGKILL {victim} ({self.figures.total_kills}{loop})")
                    time.sleep(self.rng.uniform(0.2, 2.0))
                    self.stack.spawn(child)
        self.kills_done.set()

    def watcher(self) -> None:
        """A child that dies by itself is restarted (as `dalal run` would), and counted."""
        while not self.settling_done.is_set():
            for child in self.stack.children.values():
                if not child.busy.acquire(blocking=False):
                    continue
                try:
                    if child.process is not None and child.process.poll() is not None:
                        code = child.process.returncode
                        self.figures.self_exits[child.name] = (
                            self.figures.self_exits.get(child.name, 0) + 1
                        )
                        self.config.say(f"[{self._t()}] {child.name} exited by itself ({code})")
                        time.sleep(1.0)
                        self.stack.spawn(child)
                finally:
                    child.busy.release()
            time.sleep(0.3)

    def fault_injector(self) -> None:
        cfg = self.config
        rounds = 0
        while not self.stop_chaos.is_set() and rounds < cfg.faults:
            time.sleep(self.rng.uniform(0.5, 1.5) * self._fault_gap())
            name, path, body = self.rng.choice(FAULTS)
            try:
                self.stack.control(path, body)
            except (httpx.HTTPError, RuntimeError) as exc:
                cfg.say(f"fault {name} not injected: {exc}")
                continue
            rounds += 1
            self.figures.faults[name] = self.figures.faults.get(name, 0) + 1

    def _fault_gap(self) -> float:
        return max(1.0, self._planned_seconds() / max(self.config.faults, 1))

    def _planned_seconds(self) -> float:
        cfg = self.config
        return max(
            cfg.orders / cfg.orders_per_second, (cfg.kills + cfg.redis_kills) * cfg.kill_gap_seconds
        )

    def clock(self) -> None:
        """Kitesim's manual clock: `clock_step_seconds` (4) market seconds per step, a step every
        0.5 s at most (a minute bar every ~8 s when kitesim keeps up), stopped at 14:50 IST."""
        while not self.stop_chaos.is_set() or not self.settling_done.is_set():
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                step = {"seconds": self.config.clock_step_seconds}
                now = datetime.fromisoformat(self.stack.control("/clock/advance", step)["now"])
                if (now.astimezone(IST).hour, now.astimezone(IST).minute) >= LAST_SIM_TIME:
                    return
            time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))

    def _t(self) -> str:
        return f"{time.monotonic() - self.t0:6.1f}s"

    # -- the run
    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.t0 = time.monotonic()
        self.settling_done = threading.Event()
        threads = [
            self._thread(self.sender, "sender"),
            self._thread(self.monkey, "monkey"),
            self._thread(self.watcher, "watcher"),
            self._thread(self.fault_injector, "faults"),
            self._thread(self.clock, "clock"),
        ]
        while not (self.sending_done.is_set() and self.kills_done.is_set()):
            time.sleep(0.5)
        self.stop_chaos.set()
        self.figures.chaos_seconds = round(time.monotonic() - self.t0, 1)
        cfg.say(f"[{self._t()}] chaos over: settling (deadline {cfg.settle_seconds:.0f}s)")
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            self.stack.control("/faults", {}, "DELETE")
        for t in threads[:2]:
            t.join()
        # from here on the stack runs undisturbed (the watcher still restarts a child that
        # exits by itself): every child up before judging
        for child in self.stack.children.values():
            wait_for(child.healthy, 120, f"{child.name} healthy after the chaos")
        settle_start = time.monotonic()
        deadline = settle_start + cfg.settle_seconds
        result: dict[str, Any] = {}
        streak = 0  # clean twice in a row, a few seconds apart: nothing was still on its way
        while True:
            try:
                result = check(self.stack, self.sent)
            except Exception as exc:  # a service may still be starting: look again
                result = {"error": repr(exc)}
            streak = streak + 1 if result.get("clean") else 0
            if streak >= 2 or time.monotonic() > deadline:
                break
            time.sleep(5 if streak else 3)
        self.settling_done.set()
        for t in threads:
            t.join(timeout=30)
        self.figures.settle_seconds = round(time.monotonic() - settle_start, 1)
        if "error" in result:
            raise RuntimeError(f"the checks could not run: {result['error']}")
        self._fill_figures(result)
        failures = result["failures"]
        for f in failures:
            needles = [f.get(k) for k in ("client_order_id", "broker_order_id", "trade_id")]
            f["log_lines"] = log_lines(self.stack.var / "log", [n for n in needles if n])
        return {
            "figures": {**asdict(self.figures), "total_kills": self.figures.total_kills},
            "clean": self.figures.clean,
            "failures": failures,
            "harness_errors": self.errors,
            "workdir": str(self.stack.workdir),
        }

    def _fill_figures(self, r: dict[str, Any]) -> None:
        f = self.figures
        f.orders_sent = len(self.sent)
        f.orders_http = sum(1 for s in self.sent.values() if s.via == "http")
        f.orders_stream = f.orders_sent - f.orders_http
        f.http_unanswered = sum(1 for s in self.sent.values() if s.answer == "unanswered")
        f.http_attempt_errors = dict(sum((s.errors for s in self.sent.values()), Counter()))
        f.lost_never_acknowledged = sum(
            1 for x in r["failures"] if x["check"] == "a_lost" and x.get("answer") == "unanswered"
        )
        for key in (
            "engine_commands",
            "minute_bars",
            "placed",
            "rejected",
            "rejected_by_reason",
            "cancelled_unplaced",
            "lost",
            "duplicated",
            "kite_orders_by_status",
            "kite_trades",
            "ledger_trades",
            "trade_mismatches",
            "position_mismatches",
            "dlq_entries",
            "dlq_without_event",
            "reconcile_breaks_broker",
            "reconcile_breaks_portfolio",
        ):
            setattr(f, key, r[key])
        f.converged = bool(r["clean"])


# ----------------------------------------------------------------------------- the checks


def _stream(client: redis.Redis, stream: str) -> list[tuple[str, dict[bytes, bytes]]]:
    out: list[tuple[str, dict[bytes, bytes]]] = []
    start = "-"
    while True:
        chunk = client.xrange(stream, min=start, count=1000)
        if not chunk:
            return out
        out.extend((i.decode(), f) for i, f in chunk)
        start = "(" + chunk[-1][0].decode()


def _decoded(entries: list[tuple[str, dict[bytes, bytes]]]) -> list[Envelope]:
    out = []
    for _, fields in entries:
        with contextlib.suppress(Exception):  # a bad entry is the DLQ's business, not ours
            out.append(Envelope.from_fields(fields))
    return out


def _sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def check(stack: Stack, sent: dict[str, Sent]) -> dict[str, Any]:
    """The five checks of the chaos run; `clean` when all hold."""
    failures: list[dict[str, Any]] = []
    client = stack.redis_client()
    try:
        events = _decoded(_stream(client, ORDERS_EVENTS))
        commands = _decoded(_stream(client, ORDERS_COMMANDS))
        dlq_keys = sorted(k.decode() for k in client.scan_iter(match="dlq.*", count=1000))
        dlq = {k: _stream(client, k) for k in dlq_keys}
        minute_bars = int(client.xlen("market.bars.minute"))
    finally:
        client.close()
    rejected_events: dict[str, list[str]] = {}
    cancelled_events: set[str] = set()
    for env in events:
        msg = env.message
        if isinstance(msg, OrderRejected):
            rejected_events.setdefault(msg.client_order_id, []).append(msg.reason)
        elif isinstance(msg, OrderCancelled):
            cancelled_events.add(msg.client_order_id)
    # every PlaceOrder: the harness's, what reached the stream, and what the engine recorded
    expected: dict[str, str] = {coid: f"harness/{s.via}" for coid, s in sent.items()}
    for env in commands:
        if isinstance(env.message, PlaceOrder):
            expected.setdefault(env.message.client_order_id, f"stream/{env.source}")
    engine_db = stack.var / "engine.sqlite3"
    engine_intents = [
        row[0] for row in _sqlite(engine_db, "SELECT client_order_id FROM engine_intents")
    ]
    for coid in engine_intents:
        expected.setdefault(coid, "engine")
    journal = {o["client_order_id"]: o for o in stack.get("broker", "/orders", limit=5000)}
    kite_orders = stack.kite_call(lambda k: k.orders())
    kite_trades = stack.kite_call(lambda k: k.trades())
    kite_positions = stack.kite_call(lambda k: k.positions())
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for o in kite_orders:
        if o.get("tag"):
            by_tag.setdefault(o["tag"], []).append(o)

    # (a) every command placed exactly once or rejected with a reason
    placed = rejected = cancelled_unplaced = lost = duplicated = 0
    reasons: Counter[str] = Counter()
    for coid, origin in sorted(expected.items()):
        at_kite = by_tag.get(coid, [])
        row = journal.get(coid)
        if len(at_kite) > 1:
            duplicated += 1
            failures.append(
                {
                    "check": "a_duplicated",
                    "client_order_id": coid,
                    "origin": origin,
                    "kite_order_ids": [o["order_id"] for o in at_kite],
                    "journal": row,
                }
            )
        elif len(at_kite) == 1:
            placed += 1
        elif (row is not None and row["status"] == "REJECTED" and row.get("reason")) or (
            coid in rejected_events
        ):
            rejected += 1
            reasons[(row or {}).get("reason") or rejected_events[coid][0]] += 1
        elif (row is not None and row["status"] == "CANCELLED") or coid in cancelled_events:
            cancelled_unplaced += 1  # an engine entry cancelled before it was ever sent
        else:
            lost += 1
            failures.append(
                {
                    "check": "a_lost",
                    "client_order_id": coid,
                    "broker_order_id": (row or {}).get("broker_order_id"),
                    "origin": origin,
                    "journal": row,
                    "answer": sent[coid].answer if coid in sent else None,
                    "attempt_errors": dict(sent[coid].errors) if coid in sent else None,
                }
            )

    # (b) nothing in a DLQ without a matching rejection event
    dlq_entries = dlq_without_event = 0
    for key, entries in dlq.items():
        for entry_id, fields in entries:
            dlq_entries += 1
            text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            try:
                msg = Envelope.from_fields(fields).message
            except Exception:  # an undecodable entry has no order to reject
                msg = None
            coid = getattr(msg, "client_order_id", None)
            explained = isinstance(msg, PlaceOrder | CancelOrder | ModifyOrder) and (
                coid in rejected_events
            )
            if not explained:
                dlq_without_event += 1
                failures.append(
                    {
                        "check": "b_dlq_without_event",
                        "dlq": key,
                        "entry": entry_id,
                        "type": text.get("type"),
                        "client_order_id": coid,
                        "group": text.get("dlq_group"),
                        "error": text.get("dlq_error", "")[:300],
                        "deliveries": text.get("dlq_deliveries"),
                    }
                )

    # (c) ledger trades == kitesim trades (trade id, quantity, price)
    ledger_rows = _sqlite(
        stack.var / "portfolio.sqlite3",
        "SELECT trade_id, client_order_id, quantity, price FROM portfolio_fills",
    )
    ledger = {str(t): (str(c), int(q), Decimal(str(p))) for t, c, q, p in ledger_rows}
    kite = {
        str(t["trade_id"]): (
            str(t.get("tag") or t.get("order_id")),
            int(t["quantity"]),
            Decimal(str(t["average_price"])),
        )
        for t in kite_trades
    }
    tag_of_order = {str(o["order_id"]): o.get("tag") for o in kite_orders}
    trade_mismatches = 0
    for tid in sorted(set(kite) | set(ledger)):
        k, led = kite.get(tid), ledger.get(tid)
        if k is not None and led is not None and (k[1], k[2]) == (led[1], led[2]):
            continue
        trade_mismatches += 1
        order_id = next((str(t["order_id"]) for t in kite_trades if str(t["trade_id"]) == tid), "")
        failures.append(
            {
                "check": "c_trade_mismatch",
                "trade_id": tid,
                "broker_order_id": order_id,
                "client_order_id": tag_of_order.get(order_id) or (led[0] if led else None),
                "kite": None if k is None else {"quantity": k[1], "price": str(k[2])},
                "ledger": None if led is None else {"quantity": led[1], "price": str(led[2])},
            }
        )

    # (d) positions equal: kitesim's net quantity per (symbol, product) against the ledger's
    kite_pos = {
        (p["tradingsymbol"], p["product"]): int(p["quantity"])
        for p in kite_positions.get("net", [])
        if int(p["quantity"]) != 0
    }
    ledger_pos = {
        (p["symbol"], p["product"]): int(p["quantity"])
        for p in _positions(stack.get("portfolio", "/positions"))
        if int(p["quantity"]) != 0
    }
    position_mismatches = 0
    for key in sorted(set(kite_pos) | set(ledger_pos)):
        if kite_pos.get(key) != ledger_pos.get(key):
            position_mismatches += 1
            failures.append(
                {
                    "check": "d_position_mismatch",
                    "symbol": key[0],
                    "product": key[1],
                    "kite": kite_pos.get(key, 0),
                    "ledger": ledger_pos.get(key, 0),
                }
            )

    # (e) /reconcile clean on the broker and the portfolio
    breaks: dict[str, int] = {}
    for service in ("broker", "portfolio"):
        r = httpx.get(f"{stack.url(service)}/reconcile", headers=stack.auth, timeout=60)
        body = r.json()
        found = body.get("breaks", []) if r.status_code == 200 else [body]
        breaks[service] = len(found)
        for b in found[:50]:
            failures.append(
                {
                    "check": f"e_reconcile_{service}",
                    "break": b,
                    "client_order_id": b.get("client_order_id"),
                }
            )

    clean = not failures
    return {
        "clean": clean,
        "failures": failures,
        "engine_commands": len(engine_intents),
        "minute_bars": minute_bars,
        "placed": placed,
        "rejected": rejected,
        "rejected_by_reason": dict(reasons),
        "cancelled_unplaced": cancelled_unplaced,
        "lost": lost,
        "duplicated": duplicated,
        "kite_orders_by_status": dict(Counter(str(o.get("status")) for o in kite_orders)),
        "kite_trades": len(kite),
        "ledger_trades": len(ledger),
        "trade_mismatches": trade_mismatches,
        "position_mismatches": position_mismatches,
        "dlq_entries": dlq_entries,
        "dlq_without_event": dlq_without_event,
        "reconcile_breaks_broker": breaks["broker"],
        "reconcile_breaks_portfolio": breaks["portfolio"],
    }


def _error_code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error"))
    except ValueError:
        return "not_json"


def _positions(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        return list(body.get("positions", []))
    return list(body)


def log_lines(log_dir: Path, needles: list[str], limit: int = 8) -> list[str]:
    """The last lines of the services' logs (access logs aside) that name these ids."""
    if not needles:
        return []
    out: list[str] = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open(errors="replace") as fh:
            hits = [
                line.strip()[:400]
                for line in fh
                if any(n in line for n in needles) and "uvicorn.access" not in line
            ]
        out.extend(f"{path.stem}: {line}" for line in hits[-limit:])
    return out


# ----------------------------------------------------------------------------- entry points


def run(config: ChaosConfig) -> dict[str, Any]:
    """Start the stack, run the chaos, judge, stop the stack; returns figures and failures."""
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="dalal-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir, engine=config.engine, say=config.say)
    try:
        stack.start()
        report = Chaos(config, stack).run()
    finally:
        stack.stop()
    report["config"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k != "say"
    }
    (workdir / "chaos-figures.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def table(report: dict[str, Any]) -> str:
    f = report["figures"]
    kills = "/".join(str(f["kills"].get(v, 0)) for v in VICTIMS)
    via = f"{f['orders_http']}/{f['orders_stream']}"
    rows = [
        ("orders sent (http/stream)", f"{f['orders_sent']} ({via})"),
        ("engine commands (on minute bars)", f"{f['engine_commands']} ({f['minute_bars']})"),
        ("kills (broker/engine/portfolio)", f"{f['total_kills']} ({kills})"),
        ("Redis kills", f["redis_kills"]),
        ("self-exits (restarted)", json.dumps(f["self_exits"]) if f["self_exits"] else 0),
        ("faults injected", f"{sum(f['faults'].values())} {json.dumps(f['faults'])}"),
        ("placed at kitesim once", f["placed"]),
        ("rejected with a reason", f"{f['rejected']} {json.dumps(f['rejected_by_reason'])}"),
        ("cancelled before placement", f["cancelled_unplaced"]),
        ("LOST (never acknowledged)", f"{f['lost']} ({f['lost_never_acknowledged']})"),
        ("DUPLICATED", f["duplicated"]),
        ("HTTP unanswered", f["http_unanswered"]),
        ("HTTP failed attempts", json.dumps(f["http_attempt_errors"])),
        ("kitesim orders by status", json.dumps(f["kite_orders_by_status"])),
        ("kitesim trades / ledger trades", f"{f['kite_trades']} / {f['ledger_trades']}"),
        ("TRADE MISMATCHES", f["trade_mismatches"]),
        ("POSITION MISMATCHES", f["position_mismatches"]),
        ("DLQ entries (without event)", f"{f['dlq_entries']} ({f['dlq_without_event']})"),
        ("RECONCILE BREAKS broker/portfolio",
         f"{f['reconcile_breaks_broker']}/{f['reconcile_breaks_portfolio']}"),
        ("chaos / settle seconds", f"{f['chaos_seconds']} / {f['settle_seconds']}"),
        ("verdict", "CLEAN" if report["clean"] else "FAILURES"),
    ]  # fmt: skip
    width = max(len(str(k)) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Chaos run of Dalal's order path (SIGKILLs, Redis kills, Kite faults).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=600, help="orders the harness sends")
    p.add_argument("--kills", type=int, default=105, help="SIGKILLs of broker/engine/portfolio")
    p.add_argument("--redis-kills", type=int, default=4, help="SIGKILLs of the Redis server")
    p.add_argument("--faults", type=int, default=60, help="kitesim faults injected")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--orders-per-second", type=float, default=1.5)
    p.add_argument("--kill-gap", type=float, default=4.0, help="mean seconds between kills")
    p.add_argument(
        "--clock-step",
        type=float,
        default=4.0,
        help="market seconds kitesim's clock moves at each step (a step every 0.5 s at most)",
    )
    p.add_argument("--settle", type=float, default=300.0, help="seconds allowed to converge")
    p.add_argument("--no-engine", action="store_true", help="leave the engine out")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temporary dir")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    # SIGTERM stops the stack as Ctrl-C does (the `finally` of run())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = ChaosConfig(
        orders=args.orders,
        kills=args.kills,
        redis_kills=args.redis_kills,
        faults=args.faults,
        seed=args.seed,
        workdir=args.workdir,
        engine=not args.no_engine,
        orders_per_second=args.orders_per_second,
        kill_gap_seconds=args.kill_gap,
        clock_step_seconds=args.clock_step,
        settle_seconds=args.settle,
        say=lambda text: print(text, flush=True),
    )
    report = run(config)
    print(table(report))
    for failure in report["failures"][:40]:
        print(json.dumps(failure, default=str))
    if len(report["failures"]) > 40:
        print(f"... {len(report['failures']) - 40} more in {report['workdir']}/chaos-figures.json")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"figures: {report['workdir']}/chaos-figures.json")
    return 0 if report["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
