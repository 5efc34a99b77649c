"""`dalal console`: the web console for a stack started with `dalal run` (or any services)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer


def console(
    host: Annotated[
        str, typer.Option(help="address to listen on; loopback unless you mean to share it")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="port (default DALAL_CONSOLE_PORT or 8005)", min=1, max=65535),
    ] = None,
    grafana_url: Annotated[
        str | None, typer.Option(help="link Grafana from every page (e.g. http://host:3000)")
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="show the alerts firing in this Prometheus on Today")
    ] = None,
) -> None:
    """Serve the web console: the trading day on one page (session and Kite login, kill
    switch, strategies, positions and orders, backtests, reconcile and dead letters), updated
    live from the bus.

    It talks to the services of the local stack (`dalal run`: the ports and the API key in
    var/api_key, or DALAL_* settings) and needs the same Redis. Open the printed URL and log in
    with the API key; the console keeps a session cookie, never the key, in the browser.
    `dalal run` already starts a console beside the services; this command runs one on its
    own (another port, or against services started elsewhere).
    """
    from dalal_console.app import NAME, build_app
    from dalal_console.config import ConsoleSettings
    from dalal_shared.errors import ConfigError
    from dalal_shared.logging import configure_logging
    from dalal_shared.service import serve
    from dalal_shared.settings import load_settings
    from dalal_shared.stack import SERVICES, StackSettings

    stack = StackSettings()
    key = stack.local_api_key()
    if key is None:
        typer.echo(
            f"dalal console: no API key: set DALAL_API_KEY or start the stack once with "
            f"`dalal run` (it writes {stack.api_key_file})",
            err=True,
        )
        raise typer.Exit(2)
    overrides: dict[str, object] = {
        "host": host,
        "port": port if port is not None else stack.console_port,
        "api_key": key,
        "redis_url": os.environ.get("DALAL_REDIS_URL", stack.redis_url),
    }
    for name in SERVICES:
        overrides[f"{name}_url"] = os.environ.get(f"DALAL_{name.upper()}_URL", stack.url_of(name))
    if grafana_url:
        overrides["grafana_url"] = grafana_url
    if prometheus_url:
        overrides["prometheus_url"] = prometheus_url
    try:
        settings = load_settings(ConsoleSettings, **overrides)
        configure_logging(
            NAME, level=settings.log_level, fmt=settings.log_format,
            secrets=settings.secret_values(),
        )  # fmt: skip
        app = build_app(settings)
    except ConfigError as exc:
        typer.echo(f"dalal console: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Dalal console on http://{host}:{settings.port} (log in with the API key)")
    sys.stdout.flush()
    serve(app, settings, name=NAME)
