"""A backtest over data that covers less than the requested range says so: `dalal backtest`
prints a warning per symbol and the range of bars it used, and result.json carries the
warnings with the actual data range next to the requested one. The INFY fixture holds
2020-10-01 .. 2021-03-31."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestSettings
from dalal_engine.strategyconfig import validate_document
from dalal_shared.timeutil import IST

FIXTURES = Path(__file__).parent / "fixtures"
DALAL = (sys.executable, "-m", "dalal_shared.cli")


def options(out: Path) -> tuple[str, ...]:
    return ("--data-dir", str(FIXTURES), "--out", str(out))


def backtest(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = subprocess.run(
        [
            *DALAL,
            "backtest",
            "--strategy",
            "sma_cross",
            "--symbols",
            "INFY",
            *options(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((tmp_path / "result.json").read_text())


@pytest.mark.slow
def test_a_range_beyond_the_data_is_reported_with_the_range_used(tmp_path: Path) -> None:
    proc, result = backtest(tmp_path, "--from", "2020-06-01", "--to", "2021-06-30")
    assert result["start"].startswith("2020-06-01")  # what was asked ...
    assert result["data_start"].startswith("2020-10-01")  # ... and what there was
    assert result["data_end"].startswith("2021-03-31")
    assert len(result["warnings"]) == 2
    assert "2020-10-01" in proc.stderr and "2021-03-31" in proc.stderr


@pytest.mark.slow
def test_a_range_inside_the_data_has_no_warning(tmp_path: Path) -> None:
    proc, result = backtest(tmp_path, "--from", "2020-11-02", "--to", "2021-03-31")
    assert result["warnings"] == []
    assert result["data_start"].startswith("2020-11-02")
    assert "warning" not in proc.stderr


def test_the_first_session_after_a_holiday_start_is_coverage_enough() -> None:
    # requested from a Sunday: the data starting the Monday after covers it
    cfg = validate_document({"name": "c", "strategy": "sma_cross", "universe": ["INFY"],
                             "params": {"fast_bars": 5, "slow_bars": 20}})[0]  # fmt: skip
    data = {"INFY": history.load("INFY", "day", data_dir=FIXTURES)}
    s = BacktestSettings(
        start=datetime(2020, 11, 1, tzinfo=IST), end=datetime(2021, 4, 1, tzinfo=IST)
    )
    result = Backtester(cfg, data, s).run()
    assert result.warnings == []  # 2021-04-01 00:00: the last session asked for is 2021-03-31
    late = BacktestSettings(
        start=datetime(2020, 11, 1, tzinfo=IST), end=datetime(2021, 4, 2, 10, tzinfo=IST)
    )
    assert Backtester(cfg, data, late).run().warnings == [
        "INFY: the data ends 2021-03-31, before the requested end 2021-04-01"
    ]
