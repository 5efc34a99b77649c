"""`dalal backtest` collects the young generation less often during the run and the report,
and puts the collector's thresholds back afterwards (an error too); its imports load without
collections and are frozen."""

from __future__ import annotations

import gc

import pytest

from dalal_engine.cli import _young_collections_every


def test_threshold_raised_then_restored() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with _young_collections_every(20_000):
            assert gc.get_threshold() == (20_000, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
        with pytest.raises(RuntimeError), _young_collections_every(20_000):
            raise RuntimeError("boom")
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_collection_turned_off_stays_off() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(0, 10, 10)
        with _young_collections_every(20_000):
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_imports_are_frozen_and_the_collector_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command's own imports (numpy, pydantic, the backtester: loaded after the CSV files
    started reading) load without collections and are frozen after, as the dispatcher loads a
    command; the collector is on or off as before, an error too."""
    from dalal_engine.cli import _imports_frozen

    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(gc.isenabled()))
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with _imports_frozen():
                assert not gc.isenabled()
            assert gc.isenabled() is enabled
            with pytest.raises(ImportError), _imports_frozen():
                raise ImportError("no such module")
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    assert frozen == [False] * 4  # frozen each time, before the collector is back
