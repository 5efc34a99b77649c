"""`POST /backtests` runs on a real engine worker process (Celery on a test Redis): progress,
then the summary and the report, equal to the in-process backtester on the same bars; bad input
is refused with a code naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dalal_engine.app import build_app
from dalal_engine.backtest_jobs import BacktestRequest, run
from dalal_engine.config import EngineSettings
from dalal_shared.money import paise
from dalal_shared.testing import ServiceProcess, bearer, free_port, wait_until

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).parent / "fixtures"
KEY = "engine-backtest-test-key-012345"
AUTH = {"Authorization": f"Bearer {KEY}"}
REQUEST = {
    "strategy": "sma_cross",
    "symbols": ["INFY", "RELIANCE"],
    "from": "2020-12-01",
    "to": "2021-03-31",
    "params": {"fast_bars": 5, "slow_bars": 20},
    "risk": {"enforce_market_hours": False},
}


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_BACKTEST_DATA_DIR": str(FIXTURES),
        "DALAL_BACKTESTS_DIR": str(tmp_path / "backtests"),
        "DALAL_API_KEY": KEY,
    }


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    proc = ServiceProcess(
        "dalal_engine.worker",
        env={**env, "DALAL_METRICS_PORT": str(port), "DALAL_LOG_FORMAT": "json"},
        log_path=tmp_path / "worker.log",
        port=port,  # the metrics server answers /healthz too
    ).start()
    try:
        proc.wait_healthy(timeout=60)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(env: dict[str, str], tmp_path: Path) -> Iterator[TestClient]:
    settings = EngineSettings(
        redis_url=env["DALAL_REDIS_URL"],
        database_url=env["DALAL_DATABASE_URL"],
        backtests_dir=tmp_path / "backtests",
        api_key=KEY,
        bus_block_ms=50,
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def samples(proc: ServiceProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{proc.base_url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_backtest_job_runs_on_the_worker_like_the_backtester(
    worker: ServiceProcess, client: TestClient, tmp_path: Path
) -> None:
    posted = client.post("/backtests", json=REQUEST, headers=AUTH)
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["id"]
    assert posted.json()["status"] in ("queued", "running", "done")

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/backtests/{job_id}").json()
        assert body["status"] != "failed", body
        return body if body["status"] == "done" else None

    done = wait_until(finished, timeout=120, message="the backtest job done")
    listed = client.get("/backtests", params={"limit": 5}).json()  # the console's list
    assert [j["id"] for j in listed] == [job_id] and listed[0]["summary"] == done["summary"]
    progress = done["progress"]
    assert progress["bars_done"] == progress["bars_total"] > 50  # bar times
    assert progress["eta_seconds"] == 0

    # the same request in process, on the same bars
    result, summary = run(
        BacktestRequest.model_validate(REQUEST),
        out_dir=tmp_path / "inproc",
        cache_dir=None,
        data_dir=FIXTURES,
    )
    got = done["summary"]
    assert got["trades"] == summary["trades"] == len(result.trades) > 0
    assert got["report"] == summary["report"]
    assert got["charges_rupees"] == summary["charges_rupees"]

    report = client.get(done["links"]["json"]).json()
    assert [t["net_pnl"] for t in report["trades"]] == [
        str(paise(t.net_pnl)) for t in result.trades
    ]
    html = client.get(done["links"]["html"])
    assert html.status_code == 200 and "<svg" in html.text

    counted = samples(worker)
    assert (
        counted[("dalal_worker_tasks_total", (("state", "succeeded"), ("task", "run_backtest")))]
        == 1
    )
    assert counted[("dalal_worker_task_seconds_count", (("task", "run_backtest"),))] == 1
    # the worker's log is JSON lines, Celery's own included (no banner, no bare prints)
    lines = [line for line in worker.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # a non-JSON line fails here
    assert any(p.get("logger", "").startswith("celery") for p in parsed)
    assert all(p["service"] == "engine-worker" for p in parsed)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"strategy": "nope"}, "invalid_strategy"),
        ({"symbols": []}, "invalid_symbols"),
        ({"from": "2021-13-01"}, "invalid_from"),
        ({"to": "2020-01-01"}, "invalid_to"),
        ({"params": {"fast_bars": 5}}, "invalid_params"),
        ({"risk": {"risk_per_trade_pct": -1}}, "invalid_risk"),
        ({"capital_rupees": "-5"}, "invalid_capital_rupees"),
        ({"interval": "week"}, "invalid_interval"),
    ],
)
def test_bad_backtest_requests_are_refused_naming_the_field(
    client: TestClient, change: dict[str, Any], code: str
) -> None:
    r = client.post("/backtests", json={**REQUEST, **change}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == code


def test_an_unknown_backtest_is_404(client: TestClient) -> None:
    r = client.get("/backtests/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
