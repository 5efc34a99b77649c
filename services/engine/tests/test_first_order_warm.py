"""The first order after the engine starts does not wait for SQL to be compiled: the statements
of a bar's step and of its order (the bar, the strategy's state, the intent, the decision, the
outbox, the read of the orders to publish) are compiled when the store opens, so the step that
decides the day's first order runs no SQL compiler (on this machine ~0.3 ms a statement, ~1.6 ms
of that step). Checked on SQLite and PostgreSQL, through `on_bars` as the bars handler calls it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_fixtures import infy_bars, started_engine
from sqlalchemy.sql import compiler

from dalal_engine import store as store_module
from dalal_shared import db
from dalal_shared.messages import Bar

CONFIG = """
name: warm
strategy: sma_cross
universe: [INFY]
params: {fast_bars: 1, slow_bars: 2, fixed_quantity: 1}
risk: {enforce_market_hours: false}
"""


@contextmanager
def compilations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL statements compiled while the block runs."""
    seen: list[str] = []
    original = compiler.SQLCompiler.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(" ".join(str(self.string).split())[:80])

    with monkeypatch.context() as m:
        m.setattr(compiler.SQLCompiler, "__init__", counting)
        yield seen


def first_ordering_bar(bars: list[Bar], folder: Path) -> tuple[Bar, list[Bar]]:
    """The first bar the strategy orders on, and the bars before it (decided by a throwaway
    engine: the same bars, the same decisions)."""
    probe = started_engine(CONFIG, f"sqlite:///{folder / 'probe.sqlite3'}")
    for n, bar in enumerate(bars):
        if probe.on_bars([(bar, None)], defer_quiet=True).orders:
            return bar, bars[:n]
    raise AssertionError("the strategy never ordered on these bars")


def forget_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's statements as in a new process: compiled by nobody yet (they are module
    level, and other tests in this process have run them)."""
    for value in vars(store_module).values():
        for statement in value.values() if isinstance(value, dict) else (value,):
            if isinstance(statement, db.Prepared):
                monkeypatch.setattr(statement, "_compiled", {})


def test_the_first_order_compiles_no_sql(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ordering, before = first_ordering_bar(infy_bars()[:60], tmp_path)
    forget_compiled(monkeypatch)
    live = started_engine(CONFIG, database_url)
    for bar in before:  # bars decided on without an order
        assert not live.on_bars([(bar, None)], defer_quiet=True).orders
    with compilations(monkeypatch) as compiled:
        out = live.on_bars([(ordering, "tick-1")], defer_quiet=True)
        commands = live.store.unpublished()
    assert out.orders, "the bar the probe ordered on orders here too"
    assert [c.client_order_id for c in commands] == [o.client_order_id for o in out.orders]
    assert compiled == [], f"compiled on the first order's way: {compiled}"
