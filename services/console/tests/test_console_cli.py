"""`dalal console` as a user runs it: help, a clear refusal without a key, and a console
against a real Prometheus whose firing alert shows on the Today page's data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dalal_shared.testing import free_port, wait_until

pytestmark = pytest.mark.slow

DALAL = [str(Path(sys.executable).with_name("dalal"))]
KEY = "console-cli-test-key-0123456789"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_VAR_DIR"] = str(tmp_path / "var")
    env["COLUMNS"] = "120"
    return {**env, **extra}


def test_help_explains_and_a_missing_key_is_named(tmp_path: Path) -> None:
    shown = subprocess.run(
        [*DALAL, "console", "--help"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert shown.returncode == 0
    assert "log in" in shown.stdout.lower() and "--prometheus-url" in shown.stdout
    refused = subprocess.run(
        [*DALAL, "console"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "no API key" in refused.stderr and "api_key" in refused.stderr
    bad_port = subprocess.run(
        [*DALAL, "console", "--port", "0"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert bad_port.returncode == 2 and "--port" in bad_port.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:  # scripts/install-test-tools.sh installs it (make test)
        pytest.skip("needs prometheus (Debian's prometheus package)")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "rules.yml").write_text(
        "groups:\n"
        "  - name: console-test\n"
        "    interval: 1s\n"
        "    rules:\n"
        "      - alert: ConsoleTestAlert\n"
        "        expr: vector(1)\n"
        "        labels: {severity: page}\n"
        "        annotations: {summary: always firing}\n"
    )
    (folder / "prometheus.yml").write_text(
        "global: {evaluation_interval: 1s}\nrule_files: [rules.yml]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_console_shows_the_alerts_firing_in_prometheus(
    tmp_path: Path, prometheus: str, redis_url: str
) -> None:
    port = free_port()
    env = _env(tmp_path, DALAL_API_KEY=KEY, DALAL_REDIS_URL=redis_url)
    log = (tmp_path / "console.log").open("wb")
    proc = subprocess.Popen(
        [*DALAL, "console", "--port", str(port), "--prometheus-url", prometheus],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200,
            timeout=60,
            message="dalal console up",
        )
        client = httpx.Client(base_url=base, timeout=10)
        assert client.post("/api/login", json={"key": KEY}).status_code == 200

        def firing() -> list[dict[str, Any]]:
            alerts = client.get("/api/today").json()["alerts"]
            assert alerts["configured"] is True
            return [a for a in alerts["firing"] if a["name"] == "ConsoleTestAlert"]

        alert = wait_until(firing, timeout=60, message="the alert firing on Today")[0]
        assert alert["severity"] == "page" and alert["summary"] == "always firing"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
