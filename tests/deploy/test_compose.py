"""docker-compose.yml, checked the way a user meets it: `docker-compose config` (no engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    REQUIRED_SECRETS,
    ROOT,
    SECRET_NAME,
    TEST_SECRETS,
    dalal_run_sim_clock,
)

EXPECTED_SERVICES = {
    "redis",
    "postgres",
    "kitesim",
    "broker",
    "data",
    "data-worker",
    "scheduler",
    "portfolio",
    "engine",
    "engine-worker",
    "console",
    "prometheus",
    "alertmanager",
    "grafana",
}
DALAL_SERVICES = {"kitesim", "broker", "data", "portfolio", "engine", "console"}
# services with no database of their own
STATELESS = {"kitesim", "console"}
# processes without an API: compose name -> (image's SERVICE, module, DALAL_METRICS_PORT)
WORKERS = {
    "data-worker": ("data", "dalal_data.worker", "8012"),
    "scheduler": ("data", "dalal_data.scheduler", "8013"),
    "engine-worker": ("engine", "dalal_engine.worker", "8014"),
}
GRAFANA_DIR = ROOT / "deploy" / "grafana"

# ${VAR}, ${VAR:-x}, ${VAR:?x}, but not the escaped $${VAR} compose passes to the container.
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?")


def _referenced_variables() -> dict[str, set[str]]:
    """Variable name -> the operators it is used with in docker-compose.yml ('' when bare)."""
    refs: dict[str, set[str]] = {}
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for name, op in VAR_REF.findall(text):
        refs.setdefault(name, set()).add(op)
    return refs


def _volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for v1 strings ("src:dst:rw") and v2 dicts alike."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            parts = vol.split(":")
            out[parts[1]] = parts[0]
        else:
            out[vol["target"]] = vol.get("source", "")
    return out


def _host_ips(service: dict[str, Any]) -> list[str]:
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            parts = port.split(":")
            ips.append(parts[0] if len(parts) == 3 else "0.0.0.0")
        else:
            ips.append(port.get("host_ip") or "0.0.0.0")
    return ips


def _env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in TEST_SECRETS.items() if k not in names}


def test_compose_config_renders_the_whole_stack(rendered_compose: dict[str, Any]) -> None:
    assert set(rendered_compose["services"]) == EXPECTED_SERVICES


def test_every_dalal_service_is_built_from_the_one_dockerfile(
    dalal_services: dict[str, str], dalal_workers: dict[str, str]
) -> None:
    assert dalal_services == {name: name for name in DALAL_SERVICES}
    assert dalal_workers == {name: image for name, (image, _, _) in WORKERS.items()}


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_workers_run_their_module_and_serve_metrics(
    rendered_compose: dict[str, Any], name: str
) -> None:
    image, module, port = WORKERS[name]
    service = rendered_compose["services"][name]
    assert service["command"] == ["python", "-m", module]
    assert service["image"] == rendered_compose["services"][image]["image"]
    assert service["environment"]["DALAL_METRICS_PORT"] == port
    assert "DALAL_PORT" not in service["environment"]
    assert f"http://127.0.0.1:{port}/metrics" in " ".join(service["healthcheck"]["test"])


def test_the_data_worker_shares_the_candle_cache(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    worker, data = services["data-worker"], services["data"]
    assert worker["environment"]["DALAL_CACHE_DIR"] == data["environment"]["DALAL_CACHE_DIR"]
    cache = data["environment"]["DALAL_CACHE_DIR"]
    assert _volume_mounts(worker)[cache] == _volume_mounts(data)[cache] == "parquet-cache"


def test_only_the_data_service_touches_the_candle_cache(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    for name in ("engine", "engine-worker"):  # their bars come over the candles API
        service = services[name]
        assert service["environment"]["DALAL_DATA_URL"] == "http://data:8002", name
        assert "DALAL_CANDLE_CACHE_DIR" not in service["environment"], name
        assert "parquet-cache" not in _volume_mounts(service).values(), name
    assert "parquet-cache" in _volume_mounts(services["data"]).values()


def test_exactly_one_scheduler(rendered_compose: dict[str, Any]) -> None:
    assert rendered_compose["services"]["scheduler"]["deploy"]["replicas"] == 1


def test_broker_data_and_workers_share_the_session_key(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    for name in ("broker", "data", "data-worker", "scheduler"):
        env = services[name]["environment"]
        assert env["DALAL_SESSION_KEY"] == TEST_SECRETS["DALAL_SESSION_KEY"], name


def test_kitesim_runs_only_in_the_sim_profile(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    assert services["kitesim"].get("profiles") == ["sim"]
    assert all(not services[name].get("profiles") for name in EXPECTED_SERVICES - {"kitesim"})


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_every_service_has_a_healthcheck(rendered_compose: dict[str, Any], name: str) -> None:
    check = rendered_compose["services"][name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False)
    assert check["test"][0] in {"CMD", "CMD-SHELL"}


@pytest.mark.parametrize("name", sorted(DALAL_SERVICES))
def test_dalal_healthchecks_hit_healthz_on_the_service_port(
    rendered_compose: dict[str, Any], name: str
) -> None:
    service = rendered_compose["services"][name]
    port = service["environment"]["DALAL_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])


def test_depends_on_waits_for_health(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must give conditions"
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: {spec}"
    for name in (DALAL_SERVICES - STATELESS) | set(WORKERS):
        assert {"redis", "postgres"} <= set(services[name]["depends_on"]), name
    for name in STATELESS:
        assert "redis" in services[name]["depends_on"], name


def test_the_console_operates_the_services_from_loopback_with_the_key(
    rendered_compose: dict[str, Any],
) -> None:
    console = rendered_compose["services"]["console"]
    env = console["environment"]
    assert _host_ips(console) == ["127.0.0.1"]  # never on every interface by default
    assert env["DALAL_API_KEY"] == TEST_SECRETS["DALAL_API_KEY"]  # people log in with it
    assert env["DALAL_PORT"] == "8005"
    for name, port in (("broker", 8001), ("data", 8002), ("portfolio", 8003), ("engine", 8004)):
        assert env[f"DALAL_{name.upper()}_URL"] == f"http://{name}:{port}", name
    assert env["DALAL_PROMETHEUS_URL"] == "http://prometheus:9090"  # alerts firing on Today
    assert env["DALAL_BROKER_PUBLIC_URL"].startswith("http://127.0.0.1:")  # the browser's view


def test_redis_keeps_an_append_only_file_on_a_named_volume(
    rendered_compose: dict[str, Any],
) -> None:
    redis = rendered_compose["services"]["redis"]
    command = redis["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert _volume_mounts(redis)["/data"] == "redis-data"


def test_state_lives_on_named_volumes(rendered_compose: dict[str, Any]) -> None:
    volumes = set(rendered_compose.get("volumes") or {})
    assert {"redis-data", "postgres-data", "parquet-cache", "grafana-data"} <= volumes
    services = rendered_compose["services"]
    assert _volume_mounts(services["postgres"])["/var/lib/postgresql/data"] == "postgres-data"
    assert _volume_mounts(services["grafana"])["/var/lib/grafana"] == "grafana-data"
    data = services["data"]
    assert _volume_mounts(data)[data["environment"]["DALAL_CACHE_DIR"]] == "parquet-cache"


def test_services_reach_redis_and_postgres_by_compose_name(
    rendered_compose: dict[str, Any],
) -> None:
    services = rendered_compose["services"]
    for name in DALAL_SERVICES | set(WORKERS):
        env = services[name]["environment"]
        assert env["DALAL_REDIS_URL"].startswith("redis://redis:6379"), name
        assert env["DALAL_HOST"] == "0.0.0.0", name
        assert env["DALAL_LOG_FORMAT"] == "json", name
        assert env["DALAL_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["DALAL_DATABASE_URL"], name


def test_default_mode_is_sim_against_kitesim(rendered_compose: dict[str, Any]) -> None:
    services = rendered_compose["services"]
    for name in ("broker", "data", "data-worker"):
        env = services[name]["environment"]
        assert env["DALAL_MODE"] == "sim", name
        assert env["DALAL_KITE_ROOT_URL"] == "http://kitesim:8010", name
    # kitesim accepts exactly the Kite app the broker and data services present
    kitesim = services["kitesim"]["environment"]
    assert kitesim["DALAL_KITESIM_API_KEY"] == TEST_SECRETS["DALAL_KITE_API_KEY"]
    assert kitesim["DALAL_KITESIM_API_SECRET"] == TEST_SECRETS["DALAL_KITE_API_SECRET"]
    assert kitesim["DALAL_KITESIM_POSTBACK_URL"] == "http://broker:8001/postbacks/kite"


def test_sim_follows_kitesims_clock_as_dalal_run_does(
    rendered_compose: dict[str, Any], tmp_path: Path
) -> None:
    """On the wall clock every replayed 2024 bar would be years stale and nothing would
    trade; the feed, scheduler, engine and portfolio get what `dalal run` gives them."""
    expected = dalal_run_sim_clock(tmp_path)
    services = rendered_compose["services"]
    for name in ("engine", "data", "data-worker", "scheduler", "portfolio"):
        env = services[name]["environment"]
        assert {k: env.get(k) for k in expected} == expected, name


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_one_line_switches_every_service_to_real_kite(compose_config, load_yaml, mode: str) -> None:
    result = compose_config({**TEST_SECRETS, "DALAL_MODE": mode})
    assert result.returncode == 0, result.output
    services = load_yaml(result.stdout)["services"]
    for name in (DALAL_SERVICES - {"kitesim"}) | set(WORKERS):
        env = services[name]["environment"]
        assert env["DALAL_MODE"] == mode, name
        assert env["DALAL_KITE_ROOT_URL"] == "https://api.kite.trade", name
        assert "DALAL_ENFORCE_MARKET_HOURS" not in env, name  # market hours enforced for real
        assert "DALAL_MARKET_CLOCK" not in env, name  # the wall clock is the exchange's


def test_an_unknown_mode_is_refused(compose_config) -> None:
    result = compose_config({**TEST_SECRETS, "DALAL_MODE": "yolo"})
    assert result.returncode != 0
    assert "yolo" in result.output


def test_grafana_is_provisioned_from_the_repository(rendered_compose: dict[str, Any]) -> None:
    grafana = rendered_compose["services"]["grafana"]
    mounts = _volume_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == str(GRAFANA_DIR / "provisioning")
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/dalal.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == str(GRAFANA_DIR / "dashboards")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(path)
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()


def test_grafana_admin_password_comes_from_the_environment(
    rendered_compose: dict[str, Any], compose_config
) -> None:
    env = rendered_compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == TEST_SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    refused = compose_config({**TEST_SECRETS, "GRAFANA_ADMIN_PASSWORD": ""})
    assert refused.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in refused.output


def test_published_ports_bind_to_loopback_only(rendered_compose: dict[str, Any]) -> None:
    for name, service in rendered_compose["services"].items():
        for ip in _host_ips(service):
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip}"


# secrets of optional features: unset unless the user sets them, never a default value
OPTIONAL_SECRETS = {"DALAL_TELEGRAM_BOT_TOKEN"}


def test_required_secrets_are_interpolated_with_a_message() -> None:
    refs = _referenced_variables()
    for name in REQUIRED_SECRETS:
        assert refs.get(name) == {":?"}, f"{name} must always be ${{{name}:?message}}"
    text = COMPOSE_FILE.read_text()
    for name, ops in refs.items():
        if name in OPTIONAL_SECRETS:
            assert ops == {":-"} and f"${{{name}:-}}" in text, f"{name}: empty unless set"
        elif SECRET_NAME.search(name):
            assert ops == {":?"}, f"secret-like {name} has a default or may be empty: {ops}"


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_a_missing_secret_stops_compose_naming_it(compose_config, missing: str) -> None:
    result = compose_config(_env_without(missing))
    assert result.returncode != 0
    assert missing in result.output


def test_an_empty_secret_stops_compose_too(compose_config) -> None:
    result = compose_config({**TEST_SECRETS, "DALAL_API_KEY": ""})
    assert result.returncode != 0
    assert "DALAL_API_KEY" in result.output


def test_env_example_documents_every_variable_compose_reads() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    missing = set(_referenced_variables()) - documented
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_env_example_holds_no_secret_value() -> None:
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    for name in (
        "DALAL_API_KEY",
        "DALAL_SESSION_KEY",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        assert values[name] == "", f"{name} must be left blank in .env.example"


def test_env_example_as_is_is_refused_until_secrets_are_filled(
    compose_config, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    refused = compose_config({}, env_file=env_file)
    assert refused.returncode != 0
    assert any(name in refused.output for name in REQUIRED_SECRETS)

    text = ENV_EXAMPLE.read_text()
    for name, value in TEST_SECRETS.items():
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.M)
    env_file.write_text(text)
    accepted = compose_config({}, env_file=env_file)
    assert accepted.returncode == 0, accepted.output


def test_no_image_bakes_a_secret(rendered_compose: dict[str, Any]) -> None:
    for name, service in rendered_compose["services"].items():
        args = (service.get("build") or {}).get("args") or {}
        for key, value in args.items():
            assert not SECRET_NAME.search(key), f"{name} passes build arg {key}"
            assert str(value) not in TEST_SECRETS.values(), f"{name} bakes a secret in {key}"
    dockerfile = DOCKERFILE.read_text()
    for line in dockerfile.splitlines():
        match = re.match(r"\s*(ARG|ENV)\s+(.*)", line)
        if match:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", match.group(2)) or [
                match.group(2).split()[0]
            ]:
                assert not SECRET_NAME.search(name), f"Dockerfile declares {name}"


def _dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule, enough for our patterns: the last match wins; a pattern
    that matches a parent folder matches everything under it; `!` re-includes."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for i, piece in enumerate(pattern.split("/")):
            if piece == "**":
                regex += "(?:.*/)?"
                continue
            regex += re.escape(piece).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            if i < len(pattern.split("/")) - 1:
                regex += "/"
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "services/broker/.env",
        "var/cache/NSE/day/INFY.parquet",
        ".venv/bin/python",
        ".git/config",
        "services/broker/tests/test_orders.py",
        "shared/src/dalal_shared/__pycache__/bus.cpython-311.pyc",
    ],
)
def test_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert _dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "uv.lock",
        "shared/pyproject.toml",
        "shared/src/dalal_shared/bus.py",
        "services/broker/pyproject.toml",
        "services/broker/src/dalal_broker/__main__.py",
    ],
)
def test_build_context_keeps_what_the_image_needs(path: str) -> None:
    assert not _dockerignore_excludes(path)


def test_the_engine_runs_the_mounted_strategies(rendered_compose: dict[str, Any]) -> None:
    from dalal_engine.strategyconfig import load_file

    engine = rendered_compose["services"]["engine"]
    path = engine["environment"]["DALAL_STRATEGIES_FILE"]
    source = Path(_volume_mounts(engine)[path])
    assert source == ROOT / "deploy" / "compose" / "strategies.yaml"
    assert load_file(source), "no strategy instance in the mounted file"
