"""Where the parts of a local stack live: ports, the var/ directory, the local API key."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dalal_shared.supervisor import ServiceSpec

SERVICES = ("broker", "data", "portfolio", "engine")
OPTIONAL_SERVICES = ("kitesim",)
# started after the services when installed: the web console (operates them over HTTP)
FRONT_ENDS = ("console",)
# processes without an API, started beside their service: (name, module, service); each serves
# Prometheus /metrics on its `<name>_metrics_port` setting (env DALAL_<NAME>_METRICS_PORT)
WORKERS = (
    ("data-worker", "dalal_data.worker", "data"),
    ("scheduler", "dalal_data.scheduler", "data"),
    ("engine-worker", "dalal_engine.worker", "engine"),
)


SIM_CLOCK_KEY = "dalal:sim:exchange-clock"
# the portfolio's equity snapshots in sim: a 15-minute bar at kitesim's default speed
SIM_SNAPSHOT_SECONDS = 2.4
SIM_STRATEGIES_FILE = Path(__file__).parent / "sim" / "strategies.yaml"
ALWAYS_WATCHED = ("NSE:NIFTY 50",)  # the market's pulse on `dalal status` and Grafana


def strategies_universe(path: Path) -> list[str]:
    """`EXCHANGE:SYMBOL` of every strategy's universe in an engine strategies file, in order
    (the file's format: services/engine strategyconfig.py; a single strategy may stand alone).
    An unreadable file gives none: the engine reports the file's problem itself."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    entries = doc.get("strategies", [doc]) if isinstance(doc, dict) else []
    out: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        exchange = str(entry.get("exchange") or "NSE")
        for symbol in entry.get("universe") or []:
            key = f"{exchange}:{symbol}"
            if key not in out:
                out.append(key)
    return out


class StackSettings(BaseSettings):
    """Settings of `dalal run` / `dalal status` (env prefix DALAL_)."""

    model_config = SettingsConfigDict(env_prefix="DALAL_", extra="ignore", frozen=True)

    var_dir: Path = Field(Path("var"), description="local state: Redis data, logs, SQLite, cache")
    redis_port: int = Field(6390, ge=1, le=65535, description="port of the embedded Redis")
    external_redis_url: str | None = Field(
        None, description="use this Redis instead of starting the embedded one"
    )
    broker_port: int = Field(8001, ge=1, le=65535)
    data_port: int = Field(8002, ge=1, le=65535)
    portfolio_port: int = Field(8003, ge=1, le=65535)
    engine_port: int = Field(8004, ge=1, le=65535)
    console_port: int = Field(8005, ge=1, le=65535)
    kitesim_port: int = Field(8010, ge=1, le=65535)
    data_worker_metrics_port: int = Field(8012, ge=1, le=65535)
    scheduler_metrics_port: int = Field(8013, ge=1, le=65535)
    engine_worker_metrics_port: int = Field(8014, ge=1, le=65535)
    restart_reset_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="a child up this long before it died is restarted after the shortest pause",
    )
    api_key: SecretStr | None = Field(None, description="bearer key; default: var/api_key")
    strategies_file: Path | None = Field(
        None, description="the engine's strategies; sim default: dalal_shared/sim/strategies.yaml"
    )
    feed_symbols: str | None = Field(
        None, description="the feed's EXCHANGE:SYMBOL list; default: the strategies' universe"
    )
    equity_snapshot_interval_seconds: float | None = Field(
        None,
        gt=0,
        description="the portfolio's equity snapshots (what the engine's daily-loss limit and "
        "sizing read); default: the portfolio's own (60 s), and in sim 2.4 s, a 15-minute bar "
        "at kitesim's default speed (60 s would be a whole simulated session)",
    )

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def metrics_port_of(self, worker: str) -> int:
        return int(getattr(self, f"{worker.replace('-', '_')}_metrics_port"))

    def url_of(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port_of(service)}"

    @property
    def redis_url(self) -> str:
        return self.external_redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api_key_file(self) -> Path:
        return self.var_dir / "api_key"

    def local_api_key(self, *, create: bool = False) -> str | None:
        """The key the CLI presents: DALAL_API_KEY, else var/api_key (made on first run)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return _secret_file(self.api_key_file, create=create)

    def local_session_key(self) -> str:
        """The secret that encrypts the stored Kite token (var/session_key, made on first run);
        broker, data and its workers share it."""
        key = _secret_file(self.var_dir / "session_key", create=True)
        assert key is not None
        return key


def _secret_file(path: Path, *, create: bool) -> str | None:
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def available_services() -> list[str]:
    """Services to run, kitesim (when installed) first: the broker and data talk to it; the
    console (when installed) last: it talks to all of them."""

    def installed(names: tuple[str, ...]) -> list[str]:
        return [n for n in names if importlib.util.find_spec(f"dalal_{n}.__main__") is not None]

    return [*installed(OPTIONAL_SERVICES), *SERVICES, *installed(FRONT_ENDS)]


def service_specs(settings: StackSettings, names: list[str]) -> list[ServiceSpec]:
    """What each child of `dalal run` is started with (sim mode: broker and data use kitesim)."""
    var = settings.var_dir.resolve()
    sim = "kitesim" in names
    session_key = settings.local_session_key()
    data_env = {"DALAL_CACHE_DIR": str(var / "cache"), "DALAL_SESSION_KEY": session_key}
    env_by_service: dict[str, dict[str, str]] = {
        "data": data_env,
        "portfolio": {
            "DALAL_DATABASE_URL": f"sqlite:///{var / 'portfolio.sqlite3'}",
            "DALAL_BROKER_URL": settings.url_of("broker"),
        },
        "broker": {
            "DALAL_DATABASE_URL": f"sqlite:///{var / 'broker.sqlite3'}",
            "DALAL_SESSION_KEY": session_key,
        },
        "engine": {
            "DALAL_DATABASE_URL": f"sqlite:///{var / 'engine.sqlite3'}",
            "DALAL_BACKTESTS_DIR": str(var / "backtests"),
            # the owner of market history, over HTTP: indicator warm-up, the bars of backtest
            # jobs and the fixed-cycle schedule (no service reads another's files)
            "DALAL_DATA_URL": settings.url_of("data"),
            # the owners of the safety state (kill switch, session; equity), read at start
            "DALAL_BROKER_URL": settings.url_of("broker"),
            "DALAL_PORTFOLIO_URL": settings.url_of("portfolio"),
        },
        "console": {
            # the operator's tool holds the key, as the CLI does; people log in with it
            "DALAL_API_KEY": settings.local_api_key(create=True) or "",
            **{f"DALAL_{n.upper()}_URL": settings.url_of(n) for n in SERVICES},
        },
        "kitesim": {
            # the simulated exchange survives a restart: same day, tokens, orders, positions
            "DALAL_KITESIM_STATE_FILE": str(var / "kitesim" / "state.json"),
            "DALAL_KITESIM_REDIRECT_URL": f"{settings.url_of('broker')}/session/callback",
            "DALAL_KITESIM_POSTBACK_URL": f"{settings.url_of('broker')}/postbacks/kite",
        },
    }
    if sim:
        # the engine trades out of the box: the user's strategies or the sim default, running
        # from its first start (a mode the user sets later is kept), on kitesim's clock
        strategies = settings.strategies_file or SIM_STRATEGIES_FILE
        env_by_service["engine"].update(
            DALAL_STRATEGIES_FILE=str(strategies),
            DALAL_START_MODE="running",
            DALAL_MARKET_CLOCK="exchange",
            DALAL_MARKET_CLOCK_REDIS_KEY=SIM_CLOCK_KEY,
            DALAL_BROKER_URL=settings.url_of("broker"),
            DALAL_PORTFOLIO_URL=settings.url_of("portfolio"),
        )
        # the feed follows the strategies' universe unless the user names the symbols
        feed_symbols = settings.feed_symbols or ",".join(
            dict.fromkeys([*strategies_universe(strategies), *ALWAYS_WATCHED])
        )
        kite = {
            "DALAL_KITE_ROOT_URL": settings.url_of("kitesim"),
            "DALAL_KITE_API_KEY": "kitesim_key",
            "DALAL_KITE_API_SECRET": "kitesim_secret_0123456789",
        }
        env_by_service["broker"].update(kite, DALAL_ENFORCE_MARKET_HOURS="false")
        data_env.update(
            kite,
            DALAL_FEED_ENABLED="true",
            DALAL_FEED_SYMBOLS=feed_symbols,
            DALAL_FEED_WATCH_ALWAYS="true",  # kitesim's clock is not the wall clock
            # the scheduler's timed jobs (pre-market check, end of day) follow kitesim's days:
            # the feed shares its exchange clock through Redis
            DALAL_FEED_CLOCK_REDIS_KEY=SIM_CLOCK_KEY,
            DALAL_SCHEDULER_CLOCK_REDIS_KEY=SIM_CLOCK_KEY,
        )
        # the engine's market clock is kitesim's too (risk day, rate window, stale bars)
        env_by_service["engine"].update(
            DALAL_MARKET_CLOCK="exchange", DALAL_MARKET_CLOCK_REDIS_KEY=SIM_CLOCK_KEY
        )
    snapshots = settings.equity_snapshot_interval_seconds or (SIM_SNAPSHOT_SECONDS if sim else None)
    if snapshots is not None:
        env_by_service["portfolio"]["DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS"] = str(snapshots)
    specs = [
        ServiceSpec(
            name=name,
            module=f"dalal_{name}",
            port=settings.port_of(name),
            env=env_by_service.get(name, {}),
        )
        for name in names
    ]
    for worker, module, service in WORKERS:
        if service in names and importlib.util.find_spec(module) is not None:
            worker_env = {
                k: v for k, v in env_by_service[service].items() if not k.startswith("DALAL_FEED_")
            }
            specs.append(
                ServiceSpec(
                    name=worker,
                    module=module,
                    port=None,
                    env=worker_env,
                    metrics_port=settings.metrics_port_of(worker),
                )
            )
    return specs
