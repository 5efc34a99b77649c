"""MARKET orders carry the broker's market protection in the backtester too: an exit that meets a
gap beyond it is not filled (as at Kite and kitesim) and is reported as unfilled; without
protection (`--market-protection 0`) it fills at the gapped open. Real INFY daily bars: on
2025-01-17 INFY opened 4% under the previous close, the day after `sma_cross(3, 8)` signalled
an exit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from dalal_engine.backtest import Backtester, BacktestSettings
from dalal_engine.history import read_csv
from dalal_engine.strategyconfig import load_text
from dalal_shared.timeutil import IST

INFY = Path(__file__).parents[3] / "services/kitesim/src/dalal_kitesim/data/nse/day/INFY.csv"
CONFIG = """
name: gap
strategy: sma_cross
universe: [INFY]
params: {fast_bars: 3, slow_bars: 8, fixed_quantity: 10}
risk: {enforce_market_hours: false}
"""
START, END = datetime(2024, 12, 2, tzinfo=IST), datetime(2025, 2, 25, tzinfo=IST)


def run(pct: Decimal | None):  # type: ignore[no-untyped-def]
    data = {"INFY": read_csv(INFY, "INFY")}
    settings = BacktestSettings(start=START, end=END, market_protection_pct=pct)
    return Backtester(load_text(CONFIG)[0], data, settings).run()


def test_an_exit_beyond_its_market_protection_is_not_filled_and_says_so() -> None:
    protected, unprotected = run(Decimal("3")), run(None)
    (missed,) = protected.unfilled
    assert missed.client_order_id.startswith("X-2501160000") and missed.side.value == "SELL"
    assert missed.client_order_id not in {f.client_order_id for f in protected.fills}
    gapped = next(f for f in unprotected.fills if f.client_order_id == missed.client_order_id)
    assert gapped.at.astimezone(IST).date().isoformat() == "2025-01-17"
    # the reference is the signal bar's close: the gapped open is more than 3% under it
    assert gapped.price < missed.reference * Decimal("0.97")
    assert unprotected.unfilled == []
    assert protected.to_json()["unfilled"][0]["client_order_id"] == missed.client_order_id


def dalal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dalal_shared.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_takes_the_protection_and_zero_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = {}
    for pct in ("3", "0"):
        proc = dalal(
            "backtest", "--config", str(tmp_path / "c.yaml"), "--data-dir", str(INFY.parent),
            "--from", "2024-12-02", "--to", "2025-02-24", "--market-protection", pct,
            "--out", str(tmp_path / pct),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[pct] = json.loads((tmp_path / pct / "result.json").read_text())
    assert len(out["3"]["unfilled"]) == 1 and out["0"]["unfilled"] == []
    bad = dalal("backtest", "--config", str(tmp_path / "c.yaml"), "--market-protection", "-1")
    assert bad.returncode == 2 and "market-protection" in bad.stderr
