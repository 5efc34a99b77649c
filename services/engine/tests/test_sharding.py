"""Scaling the live engine by symbols: shards split a universe by a stable hash, each reads
every bar in its own consumer group, and a symbol's orders come from exactly one shard."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from engine_fixtures import announce_safe, infy_bars, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.sharding import shard_configs, shard_of
from dalal_engine.strategyconfig import load_text
from dalal_shared.errors import ConfigError
from dalal_shared.messages import Envelope, PlaceOrder
from dalal_shared.settings import load_settings
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import bearer, wait_until

KEY = "engine-shard-test-key-0123456789"
# INFY hashes to shard 0 of 2, SBIN to shard 1 (zlib.crc32, stable across processes)
CONFIG = """
name: cross
strategy: sma_cross
universe: [INFY, SBIN]
params: {fast_bars: 5, slow_bars: 20}
risk: {enforce_market_hours: false}
"""


def test_shards_split_every_universe_by_a_stable_hash() -> None:
    assert [shard_of(s, 2) for s in ("INFY", "SBIN", "TCS", "ITC")] == [0, 1, 0, 1]

    def item(name: str, universe: str) -> str:
        text = CONFIG.strip().replace("name: cross", f"name: {name}")
        return "  - " + text.replace("[INFY, SBIN]", universe).replace("\n", "\n    ") + "\n"

    two = "strategies:\n" + item("cross", "[INFY, SBIN]") + item("only_infy", "[INFY]")
    configs = load_text(two)
    first, second = shard_configs(configs, 0, 2), shard_configs(configs, 1, 2)
    assert [(c.name, c.universe) for c in first] == [("cross", ["INFY"]), ("only_infy", ["INFY"])]
    assert [(c.name, c.universe) for c in second] == [("cross", ["SBIN"])]  # no empty instance
    assert shard_configs(configs, 0, 1) == configs


def test_a_shard_index_out_of_range_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_SHARD_COUNT", "2")
    monkeypatch.setenv("DALAL_SHARD_INDEX", "2")
    with pytest.raises(ConfigError, match="DALAL_SHARD_INDEX"):
        load_settings(EngineSettings)


def run_engines(redis_url: str, tmp_path: Path, count: int) -> list[PlaceOrder]:
    """`count` shards of the engine (1: a single process) on one Redis, every bar of INFY and
    SBIN published once; the PlaceOrder commands they sent."""
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    announce_safe(r)
    bars = infy_bars()
    with ExitStack() as stack:
        shards = []
        for index in range(count):
            settings = EngineSettings(
                redis_url=redis_url,
                api_key=KEY,
                database_url=f"sqlite:///{tmp_path}/engine-{count}-{{shard}}.sqlite3",
                strategies_file=tmp_path / "strategies.yaml",
                shard_index=index,
                shard_count=count,
                bus_block_ms=50,
                **replay_settings(),
            )
            client = stack.enter_context(TestClient(build_app(settings), headers=bearer(settings)))
            client.post("/engine/start", headers={"Authorization": f"Bearer {KEY}"})
            shards.append(client)
        universes = [
            c.get("/engine/status").json()["strategies"]["cross"]["universe"] for c in shards
        ]
        assert universes == ([["INFY"], ["SBIN"]] if count == 2 else [["INFY", "SBIN"]])
        assert all((tmp_path / f"engine-{count}-{i}.sqlite3").exists() for i in range(count))
        # the same series for both symbols: each would enter on the same bars
        for bar in bars:
            for symbol in ("INFY", "SBIN"):
                moved = bar.model_copy(update={"symbol": symbol})
                r.xadd("market.bars.day", Envelope.wrap(moved, source="data").to_fields())
        last = r.xrevrange("market.bars.day", count=1)[0][0]

        names = (
            [f"engine-shard-{i}-of-{count}".encode() for i in range(count)]
            if count > 1
            else [b"engine"]
        )

        def all_read() -> bool:
            groups = {g["name"]: g for g in r.xinfo_groups("market.bars.day")}
            return all(
                g in groups and groups[g]["last-delivered-id"] == last and groups[g]["pending"] == 0
                for g in names
            )

        wait_until(all_read, message="every shard read every bar in its own group")
        return [
            m for _id, f in r.xrange(ORDERS_COMMANDS)
            if isinstance(m := Envelope.from_fields(f).message, PlaceOrder)
        ]  # fmt: skip


def test_each_symbols_orders_come_from_its_one_shard(redis_url: str, tmp_path: Path) -> None:
    orders = run_engines(redis_url, tmp_path, 2)
    by_symbol = {s: [o.client_order_id for o in orders if o.symbol == s] for s in ("INFY", "SBIN")}
    assert by_symbol["INFY"] and len(by_symbol["INFY"]) == len(by_symbol["SBIN"])
    assert len(set(by_symbol["INFY"])) == len(by_symbol["INFY"])  # none sent twice
    # two shards send what one engine sends on the same bars: the same orders, ids included
    single = run_engines(redis_url, tmp_path, 1)
    assert sorted(o.model_dump_json() for o in orders) == sorted(
        o.model_dump_json() for o in single
    )
