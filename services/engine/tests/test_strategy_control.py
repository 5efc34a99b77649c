"""Disabling a strategy instance stops its entries (refused `strategy_disabled`), keeps the
switch across restarts, and enabling it lets it enter again; through the engine's HTTP routes."""

from __future__ import annotations

from pathlib import Path

from engine_fixtures import KNOWN, infy_bars
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.testing import bearer

SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
"""


def _engine(db: str) -> LiveEngine:
    engine = LiveEngine(
        load_text(SWING),
        EngineStore.open(db),
        initial_equity_rupees=1_000_000,
        safety_known=KNOWN,
    )
    engine.start()
    return engine


def test_a_disabled_strategy_enters_nothing_until_enabled_again(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/engine.sqlite3"
    bars = infy_bars()
    engine = _engine(db)
    engine.set_enabled("sw", False)
    assert engine.status()["strategies"]["sw"]["enabled"] is False
    assert not any(engine.on_bar(b) for b in bars)
    refused = [d for d in engine.store.decisions(1000) if d["reason"] == "strategy_disabled"]
    assert refused and all(d["symbol"] == "INFY" for d in refused)
    # the switch outlives a restart; enabling it again lets the same bars enter
    fresh_db = f"sqlite:///{tmp_path}/fresh.sqlite3"
    again = _engine(db)
    assert again.disabled == {"sw"}
    again.set_enabled("sw", True)
    assert _engine(db).disabled == set()
    assert any(_engine(fresh_db).on_bar(b) for b in bars)


def test_routes_switch_a_known_instance_and_name_an_unknown_one(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "swing.yaml").write_text(SWING)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key="strategy-control-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "swing.yaml",
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        resp = client.post("/strategies/sw/disable")
        assert resp.status_code == 200 and resp.json() == {"name": "sw", "enabled": False}
        assert client.get("/engine/status").json()["strategies"]["sw"]["enabled"] is False
        assert client.post("/strategies/sw/enable").json()["enabled"] is True
        unknown = client.post("/strategies/nope/disable")
        assert unknown.status_code == 404
        assert "'nope'" in unknown.json()["message"] and "sw" in unknown.json()["message"]
