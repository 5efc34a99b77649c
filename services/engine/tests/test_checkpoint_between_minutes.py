"""The engine's SQLite write-ahead log is checkpointed between minutes, not inside a step: the
service opens its store with `own_checkpoints` (SQLite's automatic checkpoint, 4-6 ms in
whichever commit takes the log past 1,000 pages, was the step's p99), and the bars handler
starts a checkpoint in a worker thread once a read's orders are out."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import redis
from engine_fixtures import CONFIG, announce_safe, infy_bars, replay_settings, started_engine
from fastapi.testclient import TestClient

from dalal_engine import handlers
from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.handlers import EngineGate, bars_handler
from dalal_shared import db
from dalal_shared.bus import Publisher
from dalal_shared.messages import Envelope
from dalal_shared.testing import wait_until

KEY = "engine-checkpoint-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def decisions_in_the_file_alone(path: Path, work: Path) -> int:
    """The decisions a reader finds in the database file without its write-ahead log: what a
    checkpoint has copied into it (0 while the copy is not a whole database yet)."""
    alone = work / "alone.sqlite3"
    shutil.copyfile(path, alone)
    try:
        with sqlite3.connect(alone) as conn:
            return int(conn.execute("SELECT count(*) FROM engine_decisions").fetchone()[0])
    except sqlite3.DatabaseError:  # no such table yet, or pages still only in the log
        return 0
    finally:
        alone.unlink()


def test_the_service_checkpoints_its_log_between_minutes(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "CHECKPOINT_INTERVAL_SECONDS", 0.0)  # after every read
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    path = tmp_path / "engine.sqlite3"
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{path}",
        strategies_file=tmp_path / "strategies.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    r = redis.Redis.from_url(redis_url)
    announce_safe(r)
    app = build_app(settings)
    store = app.state.live.store
    with store.engine.connect() as conn:  # no commit of the store runs SQLite's own checkpoint
        limit = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    assert limit == db.DEFERRED_CHECKPOINT_PAGES

    def consumed() -> bool:
        last = r.xrevrange("market.bars.day", count=1)
        return any(
            g["name"] == b"engine" and g["last-delivered-id"] == last[0][0] and g["pending"] == 0
            for g in r.xinfo_groups("market.bars.day")
        )

    with TestClient(app) as client:
        assert client.post("/engine/start", headers=AUTH).json()["running"]
        for bar in infy_bars()[:30]:
            r.xadd("market.bars.day", Envelope.wrap(bar, source="data").to_fields())
            wait_until(consumed, message="bar consumed")
        decided = len(client.get("/signals", headers=AUTH).json())
        assert decided > 0
        # SQLite alone would not have copied a page yet (the log is far from its limit)
        wait_until(
            lambda: decisions_in_the_file_alone(path, tmp_path) == decided,
            timeout=20,
            message="the decisions checkpointed into the database file",
        )


async def test_checkpoints_come_at_most_once_an_interval_and_the_last_is_never_lost(
    tmp_path: Path, aredis: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One asked for within the interval waits for its end (a burst's last writes are
    checkpointed too); one asked for while another runs follows it; never two at once."""
    live = started_engine(CONFIG, f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    handler = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())  # type: ignore[arg-type]
    checkpoints = handler.checkpoints
    ran: list[float] = []
    at_once = 0
    inside = threading.Event()
    release = threading.Event()

    def run() -> None:
        nonlocal at_once
        at_once += 1
        assert at_once == 1, "two checkpoints at once"
        ran.append(time.monotonic())
        inside.set()
        release.wait(10)
        at_once -= 1

    monkeypatch.setattr(live.store, "checkpoint", run)
    checkpoints.interval = 0.2
    first = checkpoints.soon()
    assert first is not None
    await asyncio.to_thread(inside.wait, 10)
    assert checkpoints.soon() is None  # one is running: another follows it
    release.set()
    await first
    assert len(ran) == 2
    assert ran[1] - ran[0] > 0.15  # not at once: at the interval
    later = checkpoints.soon()  # within the interval of the second: runs at its end
    assert later is not None
    assert checkpoints.soon() is None  # that one, not started yet, covers this too
    await later
    assert len(ran) == 3 and ran[2] - ran[1] > 0.15
    live.store.close()


async def test_a_failing_checkpoint_is_only_logged(
    tmp_path: Path, aredis: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bars were handled: a checkpoint that fails (a full disk) must not make the bus
    deliver them again; the next one tries again."""
    live = started_engine(CONFIG, f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    handler = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())  # type: ignore[arg-type]

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(live.store, "checkpoint", broken)
    task = handler.checkpoints.soon()
    assert task is not None
    await task  # no exception
    assert task.exception() is None
    live.store.close()
