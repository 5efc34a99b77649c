"""deploy/alertmanager: Prometheus hands its alerts to an Alertmanager (compose and Kubernetes);
its config passes `amtool check-config`, routes every alert of alerts.yml to the receiver (the
critical ones on the faster repeat), and the receiver examples its header shows are valid
Alertmanager config once filled in."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import PROMETHEUS_CONFIG, ROOT, require_tool

ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS = PROMETHEUS_CONFIG.parent / "alerts.yml"
K8S_PROMETHEUS = ROOT / "deploy" / "k8s" / "base" / "prometheus.yml"


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_tool("amtool")


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool, *args], capture_output=True, text=True, timeout=60, check=False
    )  # fmt: skip


def test_amtool_accepts_the_config(amtool: str) -> None:
    proc = _amtool(amtool, "check-config", str(ALERTMANAGER))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_amtool_rejects_a_broken_config(amtool: str, tmp_path: Path) -> None:
    """The check above can fail: a route to a receiver that does not exist is refused."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    assert _amtool(amtool, "check-config", str(broken)).returncode != 0


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r for group in rules["groups"] for r in group["rules"] if "alert" in r]


def test_every_alert_reaches_the_receiver(amtool: str) -> None:
    alerts = _alerts()
    assert len(alerts) >= 10
    for alert in alerts:
        labels = [f"alertname={alert['alert']}"] + [
            f"{k}={v}" for k, v in alert.get("labels", {}).items()
        ]
        proc = _amtool(
            amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
            "--verify.receivers=dalal", *labels,
        )  # fmt: skip
        assert proc.returncode == 0, f"{alert['alert']}: {proc.stdout}{proc.stderr}"


def test_critical_alerts_repeat_sooner(load_yaml: Callable[[str], Any]) -> None:
    route = load_yaml(ALERTMANAGER.read_text())["route"]
    (critical,) = [r for r in route["routes"] if 'severity="critical"' in r["matchers"]]
    assert _minutes(critical["repeat_interval"]) < _minutes(route["repeat_interval"])
    assert any(a.get("labels", {}).get("severity") == "critical" for a in _alerts())


def _minutes(text: str) -> int:
    return int(text[:-1]) * {"m": 1, "h": 60}[text[-1]]


def test_the_receiver_examples_in_the_header_are_valid(amtool: str, tmp_path: Path) -> None:
    """The commented `receivers:` example, uncommented and filled in, passes amtool: what the
    file tells a user to paste works."""
    lines = ALERTMANAGER.read_text().splitlines()
    start = lines.index("#   receivers:")
    example = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        example.append(line[4:].split("  #")[0].rstrip())
    receivers = yaml.safe_load("\n".join(example).replace('"<token>"', '"123:abc"')
                               .replace('"<password>"', '"pw"'))  # fmt: skip
    config = yaml.safe_load(ALERTMANAGER.read_text()) | receivers
    filled = tmp_path / "alertmanager.local.yml"
    filled.write_text(yaml.safe_dump(config))
    proc = _amtool(amtool, "check-config", str(filled))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    integrations = set(config["receivers"][0]) - {"name"}
    assert integrations == {"telegram_configs", "email_configs", "webhook_configs"}


@pytest.mark.parametrize("config", [PROMETHEUS_CONFIG, K8S_PROMETHEUS], ids=["compose", "k8s"])
def test_prometheus_sends_its_alerts_to_alertmanager(
    config: Path, load_yaml: Callable[[str], Any]
) -> None:
    alerting = load_yaml(config.read_text())["alerting"]
    targets = [t for am in alerting["alertmanagers"] for sc in am["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert targets == ["alertmanager:9093"]


def test_compose_runs_alertmanager_with_this_config(rendered_compose: dict[str, Any]) -> None:
    service = rendered_compose["services"]["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    assert f"{ALERTMANAGER.parent}:/etc/alertmanager:ro" in service["volumes"]
    assert service["ports"] == ["127.0.0.1:9093:9093/tcp"]  # its UI, on this machine only


def test_kubernetes_runs_alertmanager_with_this_config() -> None:
    kubectl = require_tool("kubectl")
    for overlay in ("dev", "prod"):
        proc = subprocess.run(
            [kubectl, "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert {("Deployment", "alertmanager"), ("Service", "alertmanager")} <= kinds
        (config,) = [d for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"].startswith("dalal-alertmanager-config")]  # fmt: skip
        assert config["data"] == {"alertmanager.yml": ALERTMANAGER.read_text()}
