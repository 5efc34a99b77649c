"""What `dalal run` gives each child in sim mode: the engine trades the default sim strategies
(or the user's), running from its first start on kitesim's clock; the feed follows the
strategies' universe unless the user names the symbols; kitesim keeps its state under var/."""

from __future__ import annotations

from pathlib import Path

import pytest

from dalal_shared.settings import load_settings
from dalal_shared.stack import (
    SIM_STRATEGIES_FILE,
    StackSettings,
    service_specs,
    strategies_universe,
)

NAMES = ["kitesim", "broker", "data", "portfolio", "engine"]


def envs(settings: StackSettings) -> dict[str, dict[str, str]]:
    return {s.name: dict(s.env) for s in service_specs(settings, NAMES)}


def test_sim_defaults_trade_out_of_the_box(tmp_path: Path) -> None:
    env = envs(StackSettings(var_dir=tmp_path))
    engine = env["engine"]
    assert engine["DALAL_STRATEGIES_FILE"] == str(SIM_STRATEGIES_FILE)
    assert engine["DALAL_START_MODE"] == "running"
    assert engine["DALAL_MARKET_CLOCK"] == "exchange"
    universe = strategies_universe(SIM_STRATEGIES_FILE)
    assert universe  # the default file names its stocks
    assert env["data"]["DALAL_FEED_SYMBOLS"].split(",") == [*universe, "NSE:NIFTY 50"]
    assert env["kitesim"]["DALAL_KITESIM_STATE_FILE"] == str(
        tmp_path.resolve() / "kitesim" / "state.json"
    )
    assert env["kitesim"]["DALAL_KITESIM_REDIRECT_URL"].endswith("/session/callback")
    # equity snapshots at the simulated day's pace: a 15-minute bar, not a session a snapshot
    assert env["portfolio"]["DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS"] == "2.4"


def test_snapshots_keep_the_portfolios_pace_live_and_the_users_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = StackSettings(var_dir=tmp_path)
    portfolio = {s.name: dict(s.env) for s in service_specs(live, ["broker", "portfolio"])}
    assert "DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS" not in portfolio["portfolio"]
    monkeypatch.setenv("DALAL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS", "10")
    env = envs(load_settings(StackSettings))
    assert env["portfolio"]["DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS"] == "10.0"


def test_the_users_strategies_and_symbols_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "name: mine\nstrategy: swing\ninterval: day\nexchange: NSE\nuniverse: [ITC, SBIN]\n"
    )
    monkeypatch.setenv("DALAL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DALAL_STRATEGIES_FILE", str(mine))
    env = envs(load_settings(StackSettings))
    assert env["engine"]["DALAL_STRATEGIES_FILE"] == str(mine)
    assert env["data"]["DALAL_FEED_SYMBOLS"] == "NSE:ITC,NSE:SBIN,NSE:NIFTY 50"
    monkeypatch.setenv("DALAL_FEED_SYMBOLS", "NSE:TCS")
    assert envs(load_settings(StackSettings))["data"]["DALAL_FEED_SYMBOLS"] == "NSE:TCS"


def test_an_unreadable_strategies_file_gives_no_universe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategies: [\n")
    assert strategies_universe(bad) == []
    assert strategies_universe(tmp_path / "missing.yaml") == []
