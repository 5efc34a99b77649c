"""Parameter sweeps (`POST /sweeps`, `dalal sweep`): every grid point a backtest on the engine
workers (two real worker processes on a test Redis, the engine API as a real process), ranked by
the objective, equal point by point to the same sweep run in one process; the best point's
report served; bad grids refused naming the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dalal_engine import history, sweeps
from dalal_engine.backtest import Backtester, BacktestSettings
from dalal_shared.testing import ServiceProcess, ServiceProcesses, free_port, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "engine-sweep-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY: dict[str, Any] = {
    "strategy": "sma_cross",
    "symbols": ["INFY", "RELIANCE"],
    "from": "2020-12-01",
    "to": "2021-03-31",
    "grid": {"fast_bars": [3, 5], "slow_bars": [10, 15, 20]},
    "risk": {"enforce_market_hours": False},
}


def test_the_grid_is_every_combination_and_each_point_is_its_backtest() -> None:
    request = sweeps.parse_sweep(BODY)
    points = list(request.points())
    assert len(points) == request.points_count() == 6
    assert points[0] == {"fast_bars": 3, "slow_bars": 10}
    assert points[-1] == {"fast_bars": 5, "slow_bars": 20}
    trials = sweeps.run_local(request, cache_dir=None, data_dir=FIXTURES)
    # each trial is exactly the backtest of its point on the same bars
    point = points[4]
    cfg = request.trial(point).config()
    start, end = sweeps.window(request)
    bars = history.load_universe(cfg, start=start, end=end, data_dir=FIXTURES)
    alone = Backtester(cfg, bars, BacktestSettings(request.capital_rupees, start=start, end=end))
    assert trials[4]["metrics"] == sweeps.trial_metrics(alone.run())
    assert cfg.params["fast_bars"] == 5 and cfg.params["slow_bars"] == 15


def test_ranking_puts_the_best_first_and_a_lower_drawdown_is_better() -> None:
    trials = [
        {"n": 0, "status": "done", "metrics": {"sharpe": 0.5, "max_drawdown": 0.10}},
        {"n": 1, "status": "done", "metrics": {"sharpe": 1.5, "max_drawdown": 0.30}},
        {"n": 2, "status": "failed", "metrics": None},
        {"n": 3, "status": "done", "metrics": {"sharpe": None, "max_drawdown": 0.05}},
    ]
    assert [t["n"] for t in sweeps.ranked(trials, "sharpe")] == [1, 0, 3]
    assert [t["n"] for t in sweeps.ranked(trials, "max_drawdown")] == [3, 0, 1]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"grid": {}}, "invalid_grid"),
        ({"grid": {"fast_bars": []}}, "invalid_grid"),
        ({"grid": {"fast_bars": [5, -1]}, "params": {"slow_bars": 20}}, "invalid_grid"),
        ({"grid": {"fast_bars": [5]}, "params": {"fast_bars": 3, "slow_bars": 9}}, "invalid_grid"),
        ({"objective": "luck"}, "invalid_objective"),
        ({"symbols": []}, "invalid_symbols"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(change: dict[str, Any], code: str) -> None:
    with pytest.raises(sweeps.BadBacktestRequest) as caught:
        sweeps.parse_sweep({**BODY, **change})
    assert caught.value.code == code


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_BACKTEST_DATA_DIR": str(FIXTURES),
        "DALAL_BACKTESTS_DIR": str(tmp_path / "backtests"),
        "DALAL_API_KEY": KEY,
        "DALAL_LOG_FORMAT": "json",
    }


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    procs = []
    try:
        for i in range(2):
            port = free_port()
            procs.append(
                ServiceProcess(
                    "dalal_engine.worker",
                    env={**env, "DALAL_METRICS_PORT": str(port)},
                    log_path=tmp_path / f"worker-{i}.log",
                    port=port,
                ).start()
            )
        for p in procs:
            p.wait_healthy(timeout=60)
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.mark.slow
def test_a_sweep_runs_on_two_workers_like_one_process_and_serves_its_best_report(
    env: dict[str, str], workers: list[ServiceProcess], service_processes: ServiceProcesses
) -> None:
    engine = service_processes.start("dalal_engine", env)
    url = engine.base_url
    posted = httpx.post(f"{url}/sweeps", json=BODY, headers=AUTH)
    assert posted.status_code == 202, posted.text
    sid = posted.json()["id"]
    assert posted.json()["progress"]["trials_total"] == 6

    def finished() -> dict[str, Any] | None:
        body = httpx.get(f"{url}/sweeps/{sid}", headers=AUTH).json()
        return body if body["status"] in ("done", "failed") else None

    done = wait_until(finished, timeout=120, message="the sweep done")
    assert done["status"] == "done", done
    assert done["progress"] == {
        "trials_done": 6,
        "trials_total": 6,
        "running": 0,
        "failed": 0,
        "fraction": 1.0,
        "eta_seconds": 0.0,
    }
    local = sweeps.run_local(sweeps.parse_sweep(BODY), cache_dir=None, data_dir=FIXTURES)
    by_params = {json.dumps(t["params"], sort_keys=True): t["metrics"] for t in local}
    assert len(done["results"]) == 6
    for result in done["results"]:
        assert result["metrics"] == by_params[json.dumps(result["params"], sort_keys=True)]
    expected = sweeps.ranked(local, "sharpe")
    assert [r["params"] for r in done["results"]] == [t["params"] for t in expected]
    assert done["best"]["params"] == expected[0]["params"]
    listed = httpx.get(f"{url}/sweeps", params={"top": 1}, headers=AUTH).json()
    assert [(s["id"], s["status"], len(s["results"])) for s in listed] == [(sid, "done", 1)]
    assert 1 <= len(done["workers"]) <= 2
    page = httpx.get(f"{url}{done['links']['html']}", headers=AUTH)
    assert page.status_code == 200 and "<svg" in page.text
    report = httpx.get(f"{url}{done['links']['json']}", headers=AUTH).json()
    assert report["strategy"]["params"]["fast_bars"] == expected[0]["params"]["fast_bars"]

    # the CLI over the same API: the same ranking, as JSON
    cli = subprocess.run(
        [
            str(Path(sys.executable).with_name("dalal")),
            "sweep",
            "--strategy=sma_cross",
            "--symbols=INFY,RELIANCE",
            "--from=2020-12-01",
            "--to=2021-03-31",
            "--grid=fast_bars=3,5",
            "--grid=slow_bars=10,15,20",
            f"--engine-url={url}",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DALAL_API_KEY": KEY},
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["best"]["params"] == expected[0]["params"]
    assert printed["report"] == f"{url}/sweeps/{printed['id']}/report.html"

    # bad input over HTTP: a 422 naming the point; an unknown sweep is a 404
    bad = httpx.post(
        f"{url}/sweeps", json={**BODY, "grid": {"fast_bars": [3, 0]}, "params": {}}, headers=AUTH
    )
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_grid"
    assert httpx.get(f"{url}/sweeps/nope", headers=AUTH).status_code == 404
