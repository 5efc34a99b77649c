"""The `dalal` command: run and inspect the stack through the services' HTTP APIs."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from dalal_shared.cli_status import gather as gather_status
from dalal_shared.cli_trading import register as register_trading_commands
from dalal_shared.clients import (
    BrokerClient,
    ServiceClient,
    ServiceError,
    ServiceUnavailable,
)
from dalal_shared.dlqcli import dlq_app
from dalal_shared.embedded import EmbeddedRedis
from dalal_shared.errors import ConfigError
from dalal_shared.httpapp import hash_api_key
from dalal_shared.logging import PRIVATE_UMASK
from dalal_shared.settings import derived_read_key, load_settings
from dalal_shared.stack import (
    StackSettings,
    available_services,
    service_specs,
)
from dalal_shared.supervisor import RestartPolicy, StartupError, Supervisor

app = typer.Typer(
    name="dalal",
    help="Dalal: a self-hosted trading stack for Indian equities on Zerodha Kite Connect.\n\n"
    "Every setting comes from DALAL_* environment variables (see .env.example).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _settings() -> StackSettings:
    try:
        return load_settings(StackSettings)
    except ConfigError as exc:
        err_console.print(f"[red]dalal:[/red] {exc.message}")
        raise typer.Exit(2) from None


@app.command()
def run(
    only: Annotated[
        str | None,
        typer.Option(help="comma-separated services to start (default: all of them)"),
    ] = None,
) -> None:
    """Start the whole stack on the embedded default and print where everything is.

    Starts an embedded Redis (port DALAL_REDIS_PORT, default 6390; data under var/redis)
    unless DALAL_EXTERNAL_REDIS_URL is set, then every service as a child process. Logs go to
    var/log/<service>.log. Ctrl-C stops everything cleanly.
    """
    settings = _settings()
    # logs, databases, Redis' files, the cache: readable by this user only (children inherit)
    os.umask(PRIVATE_UMASK)
    names = available_services()
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            err_console.print(
                f"[red]dalal run:[/red] unknown service(s) {', '.join(unknown)}; "
                f"known: {', '.join(names)}"
            )
            raise typer.Exit(2)
        names = wanted
    key = settings.local_api_key(create=True)
    assert key is not None
    redis = None
    if settings.external_redis_url is None:
        redis = EmbeddedRedis(settings.var_dir / "redis", settings.redis_port)
    supervisor = Supervisor(
        service_specs(settings, names),
        var_dir=settings.var_dir,
        redis=redis,
        common_env={
            "DALAL_REDIS_URL": settings.redis_url,
            "DALAL_API_KEY_SHA256": hash_api_key(key),
            # what services present to each other's read routes (not enough to change anything)
            "DALAL_READ_API_KEY": derived_read_key(key),
            "DALAL_LOG_FORMAT": "json",
        },
        say=lambda text: console.print(text, highlight=False),
        restart_policy=RestartPolicy(reset_after_seconds=settings.restart_reset_seconds),
    )
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        supervisor.start()
    except StartupError as exc:
        err_console.print(f"[red]dalal run: cannot start:[/red] {exc}")
        supervisor.stop()
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        supervisor.stop()
        raise typer.Exit(130) from None

    table = Table(title="Dalal is running (Ctrl-C stops everything)", min_width=60)
    table.add_column("part", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_row("redis", settings.redis_url)
    for spec in supervisor.specs:
        table.add_row(spec.name, spec.url)
    console.print(table)
    console.print(
        "every service: /docs (OpenAPI), /healthz, /readyz, /metrics (Prometheus)",
        highlight=False,
    )
    console.print(f"API key for mutating routes: in {settings.api_key_file} (Bearer token)")
    if any(spec.name == "console" for spec in supervisor.specs):
        console.print(
            f"web console: {settings.url_of('console')} (log in with that key)", highlight=False
        )
    console.print(f"logs: {settings.var_dir / 'log'}/<service>.log")
    if any(spec.name == "kitesim" for spec in supervisor.specs):
        _say_replay(settings.url_of("kitesim"), key, settings.var_dir)
    sys.stdout.flush()
    try:
        supervisor.watch()
    finally:
        console.print("stopping...")
        supervisor.stop()
        console.print("stopped")


def _say_replay(url: str, key: str, var_dir: Path) -> None:
    """Where kitesim's replay stands. A sim left running (or started again on its saved
    state) for ~7.2 hours of one-minute sessions runs past the bundled data's last day, and its
    market goes silent: said here in yellow, with how to start over."""
    try:
        r = httpx.get(f"{url}/_sim/state", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        body = r.json() if r.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return
    last = body.get("replay_last_day")
    if body.get("replay_exhausted"):
        console.print(
            f"[yellow]kitesim: the replay ran past its data (last day {last}, simulated today "
            f"{body.get('day')}): no ticks, nothing trades. To replay from the start, stop and "
            f"delete {var_dir} (orders, ledger and kitesim's state go with it).[/yellow]",
            highlight=False,
        )
    elif last:
        console.print(
            f"kitesim: simulated today {body.get('day')}, the replay's data ends {last}",
            highlight=False,
        )


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show the stack at a glance: every service alive and ready (and why not), the Kite session
    and its expiry, the kill switch, the guards, the engine's mode, the workers and the last
    reconciliation of each book. Exit code 1 when a service is not ready."""
    settings = _settings()
    state = gather_status(settings)
    if as_json:
        print(json.dumps(state, indent=2, default=str))
        if not state["all_ready"]:
            raise typer.Exit(1)
        return
    table = Table(title="Dalal status")
    for column in ("service", "url", "alive", "ready", "detail"):
        table.add_column(column)
    for name, s in state["services"].items():
        style = "green" if s["ready"] else "red"
        ready = "yes" if s["ready"] else "no"
        table.add_row(
            name,
            s["url"],
            "yes" if s["alive"] else "no",
            f"[{style}]{ready}[/{style}]",
            s["detail"],
        )
    console.print(table)
    for line in _trading_state(state):
        console.print(line, highlight=False)
    if not state["all_ready"]:
        raise typer.Exit(1)


def _trading_state(state: dict[str, Any]) -> list[str]:
    """Session, kill switch, guards (broker), the engine's mode, workers, last reconciliations."""
    lines: list[str] = []
    b = state["broker"]
    if b is not None:
        session = b.get("session") or {}
        valid = session.get("valid")
        expiry = session.get("expires_at") or "-"
        lines.append(
            f"mode: {b.get('mode')}   session: {'valid until ' + expiry if valid else 'not valid'}"
        )
        ks = b.get("kill_switch") or {}
        lines.append(
            "kill switch: "
            + (f"ENGAGED ({ks.get('reason') or 'no reason'})" if ks.get("engaged") else "off")
        )
        g = b.get("guards") or {}
        cap = g.get("live_capital_cap_rupees")
        lines.append(
            f"guards: max order value Rs {g.get('max_order_value_rupees')}"
            + (f", live capital cap Rs {cap}" if cap else "")
            + f", {g.get('max_orders_per_second')} orders/s"
        )
    e = state["engine"]
    if e is not None:
        lines.append(
            f"engine: {e.get('mode')}"
            + ("" if e.get("safety_state_known") else " (safety state not yet known)")
        )
    if state["workers"]:
        lines.append(
            "workers: "
            + ", ".join(f"{w} {'up' if v['up'] else 'DOWN'}" for w, v in state["workers"].items())
        )
    for scope, last in state["reconcile"].items():
        if last is None:
            continue
        if last["at"] is None:
            lines.append(f"last reconcile ({scope}): none yet")
        else:
            outcome = "clean" if not last["breaks"] else f"{last['breaks']} break(s)"
            lines.append(f"last reconcile ({scope}): {last['at']}, {outcome}")
    return lines


@app.command()
def reconcile() -> None:
    """Compare the books with Kite now: the portfolio's ledger (positions, holdings, trades)
    and the broker's order journal (orders, trades), through each one's GET /reconcile.
    Exit code 1 when a break is found or a service cannot answer."""
    settings = _settings()
    key = settings.local_api_key()
    clean = True
    for name in ("portfolio", "broker"):
        url = settings.url_of(name)
        with ServiceClient(url, api_key=key, timeout=60) as client:
            client.service = name
            try:
                body = client.request("GET", "/reconcile")
            except ServiceUnavailable:
                console.print(f"[red]{name}[/red]: not reachable at {url}", highlight=False)
                clean = False
                continue
            except ServiceError as exc:
                console.print(f"[red]{name}[/red]: cannot reconcile: {exc.message}")
                clean = False
                continue
        breaks = body.get("breaks", [])
        if not breaks:
            console.print(f"[green]{name}[/green]: clean", highlight=False)
            continue
        clean = False
        table = Table(title=f"{name}: {len(breaks)} break(s)")
        table.add_column("kind", no_wrap=True)
        table.add_column("what")
        for b in breaks:
            what = ", ".join(f"{k} {v}" for k, v in b.items() if k != "kind" and v is not None)
            table.add_row(str(b.get("kind")), what)
        console.print(table)
    if not clean:
        raise typer.Exit(1)


@app.command()
def login(
    request_token: Annotated[
        str | None,
        typer.Option(help="the request_token Kite redirected with (or paste the whole URL)"),
    ] = None,
) -> None:
    """Log in to Kite for today: prints the login URL, then completes the session.

    Open the URL, log in, and either let Kite redirect to the broker's /session/callback
    (configure that as your app's redirect URL; kitesim's default): the command notices and
    finishes by itself; or paste the URL you were sent to here.
    """
    settings = _settings()
    with BrokerClient(settings.url_of("broker"), api_key=settings.local_api_key()) as broker:
        try:
            session = broker.session()
        except (ServiceUnavailable, ServiceError) as exc:
            err_console.print(f"[red]dalal login:[/red] {exc.message}")
            raise typer.Exit(1) from None
        if request_token is None:
            console.print(f"Open this URL and log in:\n  {session['login_url']}")
            console.print(
                "Waiting for the browser to reach the broker's /session/callback; or paste "
                "the URL Kite redirected you to (or just its request_token): ",
                end="",
            )
            sys.stdout.flush()
            request_token = _wait_for_login(broker, session.get("login_at"))
            if request_token is None:  # the browser completed it at the broker
                session = broker.session()
                console.print(
                    f"\n[green]logged in[/green] as {session['user_id']}; "
                    f"the session is valid until {session['expires_at']}"
                )
                return
        token = _request_token_from(request_token)
        if token is None:
            err_console.print(
                f"[red]dalal login:[/red] no request_token in {request_token!r}; paste the "
                "redirect URL (it contains ?request_token=...) or the token itself"
            )
            raise typer.Exit(2)
        try:
            broker.complete_login(token)
            session = broker.session()
        except (ServiceUnavailable, ServiceError) as exc:
            err_console.print(f"[red]dalal login failed:[/red] {exc.message}")
            raise typer.Exit(1) from None
    console.print(
        f"[green]logged in[/green] as {session['user_id']}; "
        f"the session is valid until {session['expires_at']}"
    )


def _wait_for_login(
    broker: BrokerClient, before: str | None, timeout_seconds: float = 900.0
) -> str | None:
    """A line typed (or piped) in, or None once the broker holds a session newer than `before`
    (the browser reached /session/callback). Polls the broker every second."""
    deadline = time.monotonic() + timeout_seconds
    reading = True
    while time.monotonic() < deadline:
        if reading:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready:
                line = sys.stdin.readline()
                if line.strip():
                    return line
                reading = line != ""  # EOF: only the broker can finish it now
        else:
            time.sleep(1.0)
        try:
            now = broker.session()
        except (ServiceUnavailable, ServiceError):
            continue
        if now.get("valid") and now.get("login_at") != before:
            return None
    err_console.print("\n[red]dalal login:[/red] no login within 15 minutes; run it again")
    raise typer.Exit(1)


def _request_token_from(text: str) -> str | None:
    text = text.strip()
    if "request_token=" in text:
        values = parse_qs(urlsplit(text).query).get("request_token")
        return values[0] if values else None
    return text if text and all(c.isalnum() or c in "-_" for c in text) else None


app.add_typer(dlq_app, name="dlq")
register_trading_commands(app)


def _load_plugins() -> None:
    """Commands contributed by installed service packages through the `dalal.cli` entry-point
    group (for example `dalal data ...` from dalal-data, `dalal backtest` from dalal-engine).
    An entry point names a typer app (added as a command group) or a plain function (added as a
    command); shared code never imports a service directly."""
    for entry in entry_points(group="dalal.cli"):
        try:
            target = entry.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            err_console.print(f"[yellow]dalal: command {entry.name!r} unavailable: {exc}[/yellow]")
            continue
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=entry.name)
        else:
            app.command(name=entry.name)(target)


def main() -> None:
    _load_plugins()
    app()


if __name__ == "__main__":
    main()
