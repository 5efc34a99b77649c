"""Fixtures of the deployment tests: the repository's deploy files and the tools that check them.

docker-compose (Debian's compose v1) and promtool are installed by scripts/install-test-tools.sh,
which `make test` runs first. When a tool is missing here, the fixture runs that script once more
and skips only when the tool still cannot be installed, with the script's own explanation.
No Docker engine is needed: compose files are only ever rendered with `config`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INSTALL_SCRIPT = ROOT / "scripts" / "install-test-tools.sh"

# Secrets compose must refuse to run without (each as ${VAR:?message}).
REQUIRED_SECRETS = (
    "DALAL_API_KEY",
    "DALAL_SESSION_KEY",
    "POSTGRES_PASSWORD",
    "DALAL_KITE_API_KEY",
    "DALAL_KITE_API_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
)

# Distinctive values, so a test can tell whether one of them leaked somewhere.
TEST_SECRETS = {
    "DALAL_API_KEY": "test-api-key-7f3a9c1e5b2d4068",
    "DALAL_SESSION_KEY": "test-session-key-0c44d1a9e8",
    "POSTGRES_PASSWORD": "test-pg-password-91c4e2",
    "DALAL_KITE_API_KEY": "test-kite-key-5d8e0a",
    "DALAL_KITE_API_SECRET": "test-kite-secret-b62f17",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password-3e9d",
}

# a `*_REDIS_KEY` names a key in Redis (the sim clock's), not a secret
SECRET_NAME = re.compile(r"((?<!REDIS_)KEY|SECRET|PASSWORD|PASSWD|TOKEN)", re.IGNORECASE)

_install_attempt: dict[str, str] = {}


def _install_output() -> str:
    """Run the installer once per session; return what it printed."""
    if "output" not in _install_attempt:
        try:
            proc = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            _install_attempt["output"] = (proc.stdout + proc.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            _install_attempt["output"] = f"{INSTALL_SCRIPT.name} did not run: {exc}"
    return _install_attempt["output"]


def require_tool(name: str) -> str:
    """Path of `name`, installing the test tools if needed; skip (saying why) if impossible."""
    path = shutil.which(name)
    if path is None:
        output = _install_output()
        path = shutil.which(name)
        if path is None:
            last = output.splitlines()[-3:] if output else ["(no output)"]
            pytest.skip(
                f"{name} is not installed and scripts/install-test-tools.sh could not install "
                f"it: {' | '.join(last)}"
            )
    return path


@pytest.fixture(scope="session")
def load_yaml() -> Callable[[str], Any]:
    return yaml.safe_load


@dataclass(frozen=True)
class ComposeResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return require_tool("docker-compose")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def compose_config(
    docker_compose: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., ComposeResult]:
    """Run `docker-compose config` on the repository's compose file with exactly `env`.

    The caller's environment and any local .env file are kept out, so only `env` and the
    given env file decide the result.
    """
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def run(env: dict[str, str], env_file: Path | None = None) -> ComposeResult:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(empty_env_file.parent)}
        proc = subprocess.run(
            [
                docker_compose,
                "--env-file",
                str(env_file or empty_env_file),
                "-f",
                str(COMPOSE_FILE),
                "--project-directory",
                str(ROOT),
                "config",
            ],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return ComposeResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def rendered_compose(
    compose_config: Callable[..., ComposeResult], load_yaml: Callable[[str], Any]
) -> dict[str, Any]:
    """The compose file as docker-compose resolves it with every required variable set."""
    result = compose_config(dict(TEST_SECRETS))
    assert result.returncode == 0, f"docker-compose config failed:\n{result.output}"
    config = load_yaml(result.stdout)
    assert isinstance(config, dict)
    return config


def _built_here(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return bool(build) and Path(build.get("dockerfile", "")).name == "Dockerfile"


@pytest.fixture(scope="session")
def dalal_services(rendered_compose: dict[str, Any]) -> dict[str, str]:
    """Compose service name -> SERVICE build arg, for every service with an HTTP API built from
    our Dockerfile (it runs the image's own command, `python -m dalal_<SERVICE>`)."""
    return {
        name: (service["build"].get("args") or {}).get("SERVICE", "")
        for name, service in rendered_compose["services"].items()
        if _built_here(service) and not service.get("command")
    }


@pytest.fixture(scope="session")
def dalal_workers(rendered_compose: dict[str, Any]) -> dict[str, str]:
    """Compose service name -> SERVICE build arg, for the processes without an API that run a
    service's image with another command (the Celery worker and beat)."""
    return {
        name: (service["build"].get("args") or {}).get("SERVICE", "")
        for name, service in rendered_compose["services"].items()
        if _built_here(service) and service.get("command")
    }


# what `dalal run` gives its services in sim so they follow kitesim's clock (and hear the
# equity at the simulated day's pace); compose's sim.env and the k8s dev overlay must agree
SIM_CLOCK_KEYS = {
    "engine": ("DALAL_MARKET_CLOCK", "DALAL_MARKET_CLOCK_REDIS_KEY"),
    "data": (
        "DALAL_FEED_CLOCK_REDIS_KEY",
        "DALAL_SCHEDULER_CLOCK_REDIS_KEY",
        "DALAL_FEED_WATCH_ALWAYS",
    ),
    "portfolio": ("DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS",),
}


def dalal_run_sim_clock(tmp: Path) -> dict[str, str]:
    """Those settings as `dalal run` sets them (its sim stack, var under `tmp`)."""
    from dalal_shared.stack import StackSettings, service_specs

    names = ["kitesim", "broker", "data", "portfolio", "engine"]
    env = {s.name: dict(s.env) for s in service_specs(StackSettings(var_dir=tmp), names)}
    return {key: env[svc][key] for svc, keys in SIM_CLOCK_KEYS.items() for key in keys}
