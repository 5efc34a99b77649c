"""`dalal backtest` collects the young generation less often during the run and the report,
and puts the collector's thresholds back afterwards (an error too)."""

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
