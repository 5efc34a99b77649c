"""The broker's journal (SQLite) is checkpointed between commands, not inside a placement: the
broker opens it with `DEFERRED_CHECKPOINT_PAGES` (SQLite's own checkpoint, 4-6 ms in whichever
commit takes the log past 1,000 pages, landed on a `PlaceOrder`'s path every few hundred
commits) and checkpoints it once a read's commands are done. A real broker process, orders
from the bus, placed at kitesim."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import redis

from dalal_shared.messages import Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import wait_until


def orders_in_the_file_alone(path: Path, work: Path) -> set[str]:
    """The orders a reader finds in the journal's file without its write-ahead log: what a
    checkpoint has copied into it (none while the copy is not a whole database yet)."""
    alone = work / "alone.sqlite3"
    shutil.copyfile(path, alone)
    try:
        with sqlite3.connect(alone) as conn:
            rows = conn.execute("SELECT client_order_id FROM broker_orders").fetchall()
            return {r[0] for r in rows}
    except sqlite3.DatabaseError:  # no such table yet, or pages still only in the log
        return set()
    finally:
        alone.unlink()


def test_the_journal_is_checkpointed_between_commands(
    start_broker, kitesim, redis_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    broker = start_broker()
    broker.login(kitesim)
    journal = next(tmp_path.rglob("broker.sqlite3"))
    with sqlite3.connect(journal) as conn:  # the journal keeps a write-ahead log
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    client = redis.Redis.from_url(redis_url)
    coids = [f"ckpt-{n}" for n in range(3)]
    for coid in coids:
        command = PlaceOrder(
            client_order_id=coid,
            symbol="INFY",
            side="BUY",
            quantity=1,
            order_type="LIMIT",
            price="9000",
            product="CNC",
        )
        client.xadd(ORDERS_COMMANDS, Envelope.wrap(command, source="engine").to_fields())
        wait_until(
            lambda c=coid: (
                broker.get(f"/orders/{c}").status_code == 200
                and broker.get(f"/orders/{c}").json()["status"] != "PENDING"
            ),
            message=f"{coid} placed",
        )
    # a few writes, far from SQLite's own 1,000-page limit: only the broker's checkpoint
    # copies them into the file
    wait_until(
        lambda: set(coids) <= orders_in_the_file_alone(journal, tmp_path),
        timeout=20,
        message="the journal's orders checkpointed into its file",
    )
