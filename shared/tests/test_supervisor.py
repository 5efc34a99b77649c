"""The supervisor behind `dalal run`: its restart back-off (a pure policy on an injected clock)
resets after a child stayed up; with real processes, a child that crash-looped and then ran
healthily gets the short back-off on its next crash, and a SIGKILLed embedded Redis comes back
on the same port with its data while a real service reconnects (/readyz green again)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from dalal_shared.embedded import EmbeddedRedis
from dalal_shared.supervisor import Backoff, RestartPolicy, ServiceSpec, Supervisor
from dalal_shared.testing import free_port, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quick_crashes_back_off_up_to_the_cap() -> None:
    clock = FakeClock()
    backoff = Backoff(RestartPolicy(), clock)
    delays = []
    for _ in range(8):
        backoff.started()
        clock.now += 0.5  # dies half a second after each start
        delays.append(backoff.exited())
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_back_off_resets_after_a_healthy_minute() -> None:
    clock = FakeClock()
    backoff = Backoff(RestartPolicy(reset_after_seconds=60), clock)
    for _ in range(6):  # a bad start: six quick crashes
        backoff.started()
        clock.now += 1
        backoff.exited()
    backoff.started()
    clock.now += 59  # up for 59 s is not long enough
    assert backoff.exited() == 30
    backoff.started()
    clock.now += 61  # up for a minute: healthy; its next crash is a first crash
    assert backoff.exited() == 1
    backoff.started()
    clock.now += 2  # and a crash loop after that grows again from the start
    assert backoff.exited() == 2


def test_policy_delays_are_capped() -> None:
    policy = RestartPolicy(base_seconds=0.5, max_seconds=5)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert policy.delay(10_000) == 5


FLAKY = """
import os, sys, time
from pathlib import Path
state = Path(os.environ["FLAKY_DIR"])
runs = state / "runs"
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
if str(n) in os.environ["FLAKY_CRASH_RUNS"].split(","):
    sys.exit(1)
(state / f"up-{n}").write_text(str(os.getpid()))
while not (state / f"crash-{n}").exists():
    time.sleep(0.02)
sys.exit(1)
"""


@pytest.fixture
def stopper() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop()


def watch_in_background(supervisor: Supervisor) -> threading.Thread:
    thread = threading.Thread(target=supervisor.watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_child_healthy_after_a_crash_loop_gets_a_short_back_off(
    tmp_path: Path, stopper: list[Supervisor]
) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "flaky_child.py").write_text(FLAKY)
    state = tmp_path / "state"
    state.mkdir()
    policy = RestartPolicy(base_seconds=0.05, max_seconds=0.8, reset_after_seconds=2.0)
    spec = ServiceSpec(
        "flaky",
        "flaky_child",
        None,
        env={
            "PYTHONPATH": str(tmp_path / "mods"),
            "FLAKY_DIR": str(state),
            "FLAKY_CRASH_RUNS": "2,3,4,5,6,7",  # runs 2 to 7 die at once: a crash loop
        },
    )
    supervisor = Supervisor(
        [spec], var_dir=tmp_path / "var", redis=None, common_env={}, restart_policy=policy,
        say=lambda _text: None,
    )  # fmt: skip
    stopper.append(supervisor)
    supervisor.start()
    child = supervisor.children[0]
    watch_in_background(supervisor)
    wait_until(lambda: (state / "up-1").exists(), timeout=60, message="the first run up")
    (state / "crash-1").write_text("now")
    # six crashes in a row, restarted with a growing pause, then the eighth run stays up
    wait_until(lambda: (state / "up-8").exists(), timeout=60, message="the 8th run up")
    assert child.restarts == 7 and child.backoff.failures == 7
    assert child.last_delay == policy.max_seconds  # the crash loop reached the cap
    wait_until(
        lambda: child.backoff.uptime() > policy.reset_after_seconds,
        timeout=60,
        message="healthy long enough",
    )
    (state / "crash-8").write_text("now")
    wait_until(lambda: (state / "up-9").exists(), timeout=60, message="restarted")
    assert child.restarts == 8
    assert child.backoff.failures == 1  # counted afresh
    assert child.last_delay == policy.base_seconds  # a short pause, not the cap


@pytest.mark.slow
def test_a_killed_embedded_redis_comes_back_with_its_data_and_services_reconnect(
    tmp_path: Path, stopper: list[Supervisor]
) -> None:
    redis_port, port = free_port(), free_port()
    embedded = EmbeddedRedis(tmp_path / "var" / "redis", redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0"
    spec = ServiceSpec(
        "portfolio",
        "dalal_portfolio",
        port,
        env={
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path / 'portfolio.sqlite3'}",
            "DALAL_RECONCILE_ENABLED": "false",
            "DALAL_BUS_BLOCK_MS": "100",
        },
    )
    supervisor = Supervisor(
        [spec],
        var_dir=tmp_path / "var",
        redis=embedded,
        common_env={"DALAL_REDIS_URL": url, "DALAL_API_KEY": "supervisor-test-key-0123456789",
                    "DALAL_LOG_FORMAT": "json"},
        restart_policy=RestartPolicy(base_seconds=0.2, max_seconds=2.0),
        say=lambda _text: None,
    )  # fmt: skip
    stopper.append(supervisor)
    supervisor.start(timeout_seconds=90)
    readyz = f"http://127.0.0.1:{port}/readyz"
    wait_until(lambda: httpx.get(readyz, timeout=5).status_code == 200, timeout=60,
               message="portfolio ready")  # fmt: skip
    client = redis.Redis.from_url(url)
    client.set("dalal:test:kept", "yes")
    client.xadd("test.stream", {"n": "1"})
    client.close()
    assert embedded.process is not None
    first_pid = embedded.process.pid

    watch_in_background(supervisor)
    os.kill(first_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            embedded.process is not None and embedded.process.pid != first_pid and embedded.ping()
        ),
        timeout=60,
        message="redis restarted",
    )
    assert supervisor.redis_restarts == 1
    again = redis.Redis.from_url(url)  # the same port
    try:
        assert again.get("dalal:test:kept") == b"yes"
        assert again.xlen("test.stream") == 1
    finally:
        again.close()
    wait_until(lambda: httpx.get(readyz, timeout=5).status_code == 200, timeout=90,
               message="portfolio ready again")  # fmt: skip
