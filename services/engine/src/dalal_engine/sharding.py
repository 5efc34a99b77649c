"""Scaling the live engine by symbols: shard `i` of `n` trades the symbols whose stable hash
falls on it, reads the bus in its own consumer group (so it sees every bar and drops the
others'), and keeps its state in its own database (`{shard}` in DALAL_DATABASE_URL).

Replicas of one engine in one consumer group would split each strategy's bars between them;
shards never do: a symbol belongs to exactly one shard, whatever the restarts.
"""

from __future__ import annotations

import zlib

from dalal_engine.strategyconfig import StrategyConfig


def shard_of(symbol: str, count: int) -> int:
    """The shard a symbol belongs to (stable across processes and Python versions)."""
    return zlib.crc32(symbol.encode()) % count


def shard_configs(configs: list[StrategyConfig], index: int, count: int) -> list[StrategyConfig]:
    """Each strategy instance restricted to this shard's symbols; instances left with none
    are not run here."""
    if count == 1:
        return configs
    out = []
    for config in configs:
        mine = [s for s in config.universe if shard_of(s, count) == index]
        if mine:
            out.append(config.model_copy(update={"universe": mine}))
    return out


def consumer_group(index: int, count: int) -> str:
    return "engine" if count == 1 else f"engine-shard-{index}-of-{count}"
