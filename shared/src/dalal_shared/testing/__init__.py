"""Test helpers: real Redis servers, service processes, polling with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.stack import StackSettings

T = TypeVar("T")

__all__ = [
    "DATA_SERVICE_KEY",
    "EmbeddedRedis",
    "ServiceProcess",
    "ServiceProcesses",
    "bearer",
    "dalal_run",
    "data_service",
    "demo_migrations",
    "free_port",
    "stack_report",
    "wait_until",
]


def bearer(settings_or_key: object) -> dict[str, str]:
    """The Authorization header for a key, or for the API key of a service's settings (every
    route but health, readiness, metrics and docs needs one)."""
    key = getattr(settings_or_key, "api_key", settings_or_key)
    if hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    return {"Authorization": f"Bearer {key}"}


_ALEMBIC_ENV = """
from alembic import context
config = context.config
context.configure(connection=config.attributes["connection"],
                  version_table=config.attributes["version_table"])
with context.begin_transaction():
    context.run_migrations()
"""
_ALEMBIC_REVISION = """
import sqlalchemy as sa
from alembic import op
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
def upgrade():
    op.create_table({table!r}, {columns})
def downgrade():
    op.drop_table({table!r})
"""


def demo_migrations(folder: Path, table: str, columns: str) -> Path:
    """`folder` made an Alembic migrations folder (as a `db.SqlStore`'s `migrations`) of one
    revision that creates `table` with `columns` (the source of its `sa.Column(...)`s)."""
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(_ALEMBIC_ENV)
    revision = _ALEMBIC_REVISION.format(table=table, columns=columns)
    (folder / "versions" / "0001_demo.py").write_text(revision)
    return folder


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {message}; last error {last_exc!r}"
    )


@contextmanager
def dalal_run(env: Mapping[str, str], out: Path, *, up_timeout: float = 120) -> Iterator[None]:
    """`dalal run` as a user starts it (with `env`, its output to `out`), up (its table
    printed) on entry and stopped on exit. When the body fails (an assertion, pytest-timeout's
    interrupt), what the stack printed and the end of every service's log go to stdout first,
    into the test report, so a failure seen only in CI can be read there."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dalal_shared.cli", "run"],
        env=dict(env),
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "Dalal is running" in out.read_text(), timeout=up_timeout, message="stack up"
        )
        yield
    except BaseException:
        print(stack_report(Path(env["DALAL_VAR_DIR"]), out))
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stack_report(var_dir: Path, out: Path, *, lines: int = 40, width: int = 400) -> str:
    """What `dalal run` printed and the last `lines` lines of each service's log (each cut to
    `width` characters)."""
    parts = [f"===== {out}", out.read_text(errors="replace") if out.exists() else "(none)"]
    for log in sorted((var_dir / "log").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"===== {log.name} (last {len(tail)} lines)")
        parts.extend(line[:width] for line in tail)
    return "\n".join(parts)


def run_env(var_dir: Path) -> dict[str, str]:
    """The environment of a `dalal run` a test starts: none of the caller's DALAL_* settings,
    its own var directory, and a free port for every port the stack has (each `*_port` setting
    of `StackSettings`: Redis, every service, every worker's metrics), so a service added to
    the stack never meets another test's on a default port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_VAR_DIR"] = str(var_dir)
    for name in StackSettings.model_fields:
        if name.endswith("_port"):
            env[f"DALAL_{name.upper()}"] = str(free_port())
    env["COLUMNS"] = "200"  # the printed table unwrapped
    return env


class ServiceProcess:
    """`python -m <module>` as a child process, its output captured to a file."""

    def __init__(
        self,
        module: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
    ):
        self.module = module
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", self.module],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.module} exited with {self.process.returncode}: {self.output()[-2000:]}"
                )
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if healthy():
                    return
            except RuntimeError:
                raise
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.module} not healthy after {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()


class ServiceProcesses:
    """The service processes one test starts, each on a free port and waited healthy; all are
    stopped at the end (fixture `service_processes`)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def start(
        self, module: str, env: Mapping[str, str], *, name: str | None = None, timeout: float = 60
    ) -> ServiceProcess:
        port = free_port()
        log = self.log_dir / f"{name or module}-{len(self.started)}.log"
        proc = ServiceProcess(
            module, env={**env, "DALAL_PORT": str(port)}, log_path=log, port=port
        ).start()
        self.started.append(proc)
        proc.wait_healthy(timeout=timeout)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


DATA_SERVICE_KEY = "data-service-test-key-0123456789"


def data_service(
    *, redis_url: str, kite_root: str, kite_api_key: str, access_token: str, workdir: Path
) -> ServiceProcess:
    """The data service as a process on a free port over the Kite API at `kite_root` (kitesim),
    its cache under `workdir`, waited healthy; the caller stops it. Its API key (reads need
    one) is `DATA_SERVICE_KEY`."""
    port = free_port()
    proc = ServiceProcess(
        "dalal_data",
        env={
            "DALAL_PORT": str(port),
            "DALAL_REDIS_URL": redis_url,
            "DALAL_CACHE_DIR": str(workdir / "cache"),
            "DALAL_KITE_ROOT_URL": kite_root,
            "DALAL_KITE_API_KEY": kite_api_key,
            "DALAL_KITE_ACCESS_TOKEN": access_token,
            "DALAL_LOG_FORMAT": "json",
            "DALAL_API_KEY": DATA_SERVICE_KEY,
        },
        log_path=workdir / "data.log",
        port=port,
    ).start()
    try:
        proc.wait_healthy(timeout=60)
    except BaseException:
        proc.stop()
        raise
    return proc
