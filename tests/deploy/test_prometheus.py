"""deploy/prometheus/prometheus.yml: valid for promtool, and it scrapes every Dalal service."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import PROMETHEUS_CONFIG


@pytest.fixture(scope="module")
def prometheus_config(load_yaml: Callable[[str], Any]) -> dict[str, Any]:
    return load_yaml(PROMETHEUS_CONFIG.read_text())


def _targets(job: dict[str, Any]) -> set[str]:
    return {t for group in job.get("static_configs", []) for t in group.get("targets", [])}


def test_promtool_accepts_the_config(promtool: str) -> None:
    proc = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_service_serving_metrics_is_scraped(
    prometheus_config: dict[str, Any],
    rendered_compose: dict[str, Any],
    dalal_services: dict[str, str],
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    for name in dalal_services:
        assert name in jobs, f"no scrape job for {name}"
        job = jobs[name]
        port = rendered_compose["services"][name]["environment"]["DALAL_PORT"]
        assert _targets(job) == {f"{name}:{port}"}
        assert job.get("metrics_path", "/metrics") == "/metrics"


def test_scrapes_every_15_seconds(prometheus_config: dict[str, Any]) -> None:
    default = prometheus_config.get("global", {}).get("scrape_interval", "1m")
    for job in prometheus_config["scrape_configs"]:
        assert job.get("scrape_interval", default) == "15s", job["job_name"]


def test_compose_mounts_this_config(rendered_compose: dict[str, Any]) -> None:
    prometheus = rendered_compose["services"]["prometheus"]
    mounts = [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in prometheus["volumes"]
    ]
    config_dir = str(PROMETHEUS_CONFIG.parent)
    assert any(m.startswith(f"{config_dir}:/etc/prometheus") for m in mounts), mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
