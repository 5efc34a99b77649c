"""The dashboards and alerts, proven on a live stack: `dalal run` in sim mode, scraped by a real
Prometheus (Debian's `prometheus` package), trading a replayed session, its alerts handed to a
real Alertmanager (Debian's `prometheus-alertmanager`) running deploy/alertmanager's config.

Every query of every Grafana panel must return data, and every alert expression must evaluate,
through Prometheus' HTTP API; every metric either names must be one the stack exports. A panel
or alert naming a metric no service exports fails this test, which names the metric.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from celery import Celery

from dalal_data.tasks import PREMARKET, QUEUE
from dalal_shared.stack import WORKERS
from dalal_shared.testing import free_port, run_env, wait_until

from .conftest import ROOT, require_tool

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
# a rule that fires at once, loaded beside alerts.yml: it proves the path to Alertmanager
PROBE_ALERT = "AlertPathProbe"
PROBE_RULES = {
    "groups": [
        {
            "name": "test-alert-path",
            "rules": [
                {"alert": PROBE_ALERT, "expr": "vector(1)", "labels": {"severity": "warning"}}
            ],
        }
    ]
}
DALAL = (sys.executable, "-m", "dalal_shared.cli")
SERVICES = ("kitesim", "broker", "data", "portfolio", "engine", "console")

# Grafana's own variables, as Grafana would expand them for a 1 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}

# A fast strategy on minute bars, so orders (and fills) come within seconds of the replay.
STRATEGIES = """\
name: proof
strategy: sma_cross
interval: minute
universe: [RELIANCE, TCS, INFY]
product: MIS
params: {fast_bars: 2, slow_bars: 3, atr_bars: 2, fixed_quantity: 1}
risk: {enforce_market_hours: false, max_orders_per_minute: 200}
"""

# ------------------------------------------------------- PromQL: which metrics a query names

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for name, call in _IDENT.findall(text):
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_reads_selectors_not_functions_or_labels() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) "
        '(rate(dalal_http_request_seconds_bucket{status=~"5.."}[1m]))) / on () group_left '
        "max(up) and on () (hour() * 60 > 3e2) unless bool "
        "dalal_bus_lag_messages offset 5m"
    )
    assert metric_names(expr) == {
        "dalal_http_request_seconds_bucket",
        "up",
        "dalal_bus_lag_messages",
    }


# ------------------------------------------------------- what the dashboards and alerts ask


@dataclass(frozen=True)
class Query:
    where: str  # "dashboard / panel [refId]" or "alert <name>"
    expr: str
    must_return_data: bool


def grafana_expr(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def panel_queries() -> list[Query]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            for target in panel["targets"]:
                where = f"{board['title']} / {panel['title']} [{target['refId']}]"
                out.append(Query(where, grafana_expr(target["expr"]), True))
    return out


def alert_queries() -> list[Query]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [
        Query(f"alert {rule['alert']}", rule["expr"], False)
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def test_the_dashboards_and_alerts_have_queries() -> None:
    boards = {json.loads(p.read_text())["uid"] for p in DASHBOARDS.glob("*.json")}
    assert boards == {"dalal-trading", "dalal-market-data", "dalal-services", "dalal-session-risk"}
    assert len(panel_queries()) > 40
    assert len(alert_queries()) >= 8


# ---------------------------------------------------------------- the live stack


@dataclass
class LiveStack:
    env: dict[str, str]
    var: Path
    prometheus: str
    alertmanager: str | None = None  # None: the alertmanager binary is not installed
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[f'DALAL_{service.upper()}_PORT']}"

    @property
    def api_key(self) -> str:
        return (self.var / "api_key").read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def query(self, expr: str) -> dict[str, Any]:
        resp = httpx.post(f"{self.prometheus}/api/v1/query", data={"query": expr}, timeout=10)
        return resp.json()

    def metric_names(self) -> set[str]:
        resp = httpx.get(f"{self.prometheus}/api/v1/label/__name__/values", timeout=10)
        return set(resp.json()["data"])

    def value(self, expr: str) -> float:
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0


def _workers() -> list[str]:
    """The workers `dalal run` starts beside its services (those installed)."""
    return [name for name, module, _ in WORKERS if importlib.util.find_spec(module) is not None]


def _metrics_port_variable(worker: str) -> str:
    return f"DALAL_{worker.upper().replace('-', '_')}_METRICS_PORT"


def _prometheus_config(
    env: dict[str, str], workers: list[str], probe_rules: Path, alertmanager_port: int | None
) -> dict[str, Any]:
    jobs = [
        {
            "job_name": name,
            "static_configs": [{"targets": [f"127.0.0.1:{env[f'DALAL_{name.upper()}_PORT']}"]}],
        }
        for name in SERVICES
    ]
    jobs += [
        {
            "job_name": worker,
            "static_configs": [{"targets": [f"127.0.0.1:{env[_metrics_port_variable(worker)]}"]}],
        }
        for worker in workers
    ]
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(ALERTS), str(probe_rules)],
        "scrape_configs": jobs,
    }
    if alertmanager_port is not None:
        targets = [f"127.0.0.1:{alertmanager_port}"]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
    return config


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the process group (Ctrl-C: `dalal run` stops its children), SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    prometheus_bin = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("live-stack")
    workers = _workers()
    env = run_env(tmp / "var")
    (tmp / "strategies.yaml").write_text(STRATEGIES)
    env["DALAL_STRATEGIES_FILE"] = str(tmp / "strategies.yaml")
    env["DALAL_KITESIM_TOKEN_EXPIRY"] = "false"  # one login lasts the whole replay

    alertmanager_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    alertmanager_port = free_port() if alertmanager_bin else None
    probe_rules = tmp / "probe-rules.yml"
    probe_rules.write_text(yaml.safe_dump(PROBE_RULES))
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(_prometheus_config(env, workers, probe_rules, alertmanager_port))
    )
    prometheus_port = free_port()
    stack = LiveStack(env, tmp / "var", f"http://127.0.0.1:{prometheus_port}")
    out = tmp / "dalal-run.out"
    try:
        if alertmanager_bin and alertmanager_port:
            stack.alertmanager = f"http://127.0.0.1:{alertmanager_port}"
            stack.started.append(
                subprocess.Popen(
                    [
                        alertmanager_bin,
                        f"--config.file={ALERTMANAGER_CONFIG}",
                        f"--storage.path={tmp / 'alertmanager'}",
                        f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                        "--cluster.listen-address=",  # no HA gossip (it wants port 9094)
                    ],
                    stdout=(tmp / "alertmanager.out").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        stack.started.append(
            subprocess.Popen(
                [*DALAL, "run"],
                env=env,
                stdout=out.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        stack.started.append(
            subprocess.Popen(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=(tmp / "prometheus.out").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_until(
            lambda: "Dalal is running" in out.read_text(),
            timeout=90,
            message=f"dalal run to report the stack up ({out})",
        )
        wait_until(
            lambda: httpx.get(f"{stack.prometheus}/-/ready").status_code == 200,
            timeout=30,
            message="prometheus ready",
        )
        yield stack
    finally:
        for proc in reversed(stack.started):
            _stop(proc)


def _send_premarket_check(stack: LiveStack) -> None:
    """Send the data-worker the 08:30 IST job the scheduler sends on trading days."""
    app = Celery(
        "dalal-live-stack-test", broker=f"redis://127.0.0.1:{stack.env['DALAL_REDIS_PORT']}/0"
    )
    try:
        app.send_task(PREMARKET, queue=QUEUE)
    finally:
        app.close()


def _trade(stack: LiveStack) -> None:
    """What a user does on a sim morning: log in, start the engine; plus a backfill, a candle
    request and the pre-market session check."""
    token = httpx.post(f"{stack.url('kitesim')}/_sim/login", headers=stack.auth()).json()
    login = subprocess.run(
        [*DALAL, "login", "--request-token", token["request_token"]],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert login.returncode == 0, login.stdout + login.stderr
    _send_premarket_check(stack)
    started = httpx.post(f"{stack.url('engine')}/engine/start", headers=stack.auth())
    assert started.status_code == 200 and started.json()["running"] is True, started.text
    backfill = httpx.post(
        f"{stack.url('data')}/backfill",
        headers=stack.auth(),
        json={"symbols": ["TCS", "RELIANCE"], "interval": "day", "from": "2023-06-01"},
    )
    assert backfill.status_code == 202, backfill.text
    candles = httpx.get(
        f"{stack.url('data')}/candles/NSE/INFY",
        params={"interval": "day", "from": "2023-06-01", "to": "2023-06-30"},
        headers=stack.auth(),
        timeout=60,
    )
    assert candles.status_code == 200, candles.text


def _problems(stack: LiveStack, queries: list[Query]) -> list[str]:
    exported = stack.metric_names()
    problems = []
    for q in queries:
        missing = sorted(metric_names(q.expr) - exported)
        if missing:
            problems.append(f"{q.where}: no service exports {', '.join(missing)}")
            continue
        answer = stack.query(q.expr)
        if answer.get("status") != "success":
            problems.append(f"{q.where}: query failed: {answer.get('error')} ({q.expr})")
        elif q.must_return_data and not answer["data"]["result"]:
            problems.append(f"{q.where}: no data ({q.expr})")
    return problems


def _targets_down(stack: LiveStack) -> dict[str, str]:
    """job -> why, for every service and worker Prometheus does not scrape successfully."""
    answer = httpx.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()
    health = {
        t["labels"]["job"]: f"{t['health']} {t.get('lastError', '')}".strip()
        for t in answer["data"]["activeTargets"]
    }
    expected = {*SERVICES, *_workers()}
    return {job: health.get(job, "no target") for job in expected if health.get(job) != "up"}


@pytest.mark.slow
def test_every_panel_returns_data_and_every_alert_evaluates_on_a_trading_stack(
    live: LiveStack,
) -> None:
    try:
        wait_until(lambda: not _targets_down(live), timeout=30, message="every target up")
    except AssertionError:
        assert not _targets_down(live), "prometheus cannot scrape these (job: health)"
    _trade(live)
    # trading happened: the replay's bars made the engine order, the portfolio booked fills
    wait_until(
        lambda: live.value("dalal_portfolio_fills_applied_total") > 0,
        timeout=60,
        message="fills booked by the portfolio and scraped by prometheus",
    )
    queries = panel_queries() + alert_queries()
    try:
        wait_until(lambda: not _problems(live, queries), timeout=20, message="every query")
    except AssertionError:
        problems = _problems(live, queries)
        assert not problems, "\n".join(["panels or alerts that do not work:", *problems])
    assert not _targets_down(live)


@pytest.mark.slow
def test_prometheus_loaded_every_alert_rule(live: LiveStack) -> None:
    rules = wait_until(
        lambda: httpx.get(f"{live.prometheus}/api/v1/rules").json()["data"]["groups"],
        message="rule groups loaded",
    )
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    expected = {q.where.removeprefix("alert ") for q in alert_queries()} | {PROBE_ALERT}
    assert set(loaded) == expected
    wait_until(
        lambda: all(
            r.get("health") == "ok"
            for g in httpx.get(f"{live.prometheus}/api/v1/rules").json()["data"]["groups"]
            for r in g["rules"]
        ),
        message="every rule evaluated without error",
    )


@pytest.mark.slow
def test_prometheus_hands_alerts_to_alertmanager_and_it_routes_them(live: LiveStack) -> None:
    """Prometheus with an `alerting` target sends a firing alert to an Alertmanager running the
    repository's config, which routes it to the `dalal` receiver."""
    if live.alertmanager is None:
        pytest.skip("prometheus-alertmanager is not installed (scripts/install-test-tools.sh)")
    am = live.alertmanager

    def probe() -> list[dict[str, Any]]:
        try:
            alerts = httpx.get(f"{am}/api/v2/alerts", timeout=5).json()
        except httpx.HTTPError:
            return []
        return [a for a in alerts if a["labels"].get("alertname") == PROBE_ALERT]

    (alert,) = wait_until(probe, timeout=60, message="the probe alert at Alertmanager")
    assert [r["name"] for r in alert["receivers"]] == ["dalal"]
    assert alert["status"]["state"] == "active"
    assert alert["labels"]["severity"] == "warning"
