"""`dalal data ...`: commands of the data service, added to the `dalal` CLI through the
`dalal.cli` entry-point group. They talk to the data service's HTTP API."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dalal_shared.clients import DataClient, ServiceError, ServiceUnavailable, client_for
from dalal_shared.settings import load_settings
from dalal_shared.stack import StackSettings

app = typer.Typer(
    name="data", help="Market data: candle cache backfill and coverage.", no_args_is_help=True
)
console = Console()


def _client() -> DataClient:
    settings = load_settings(StackSettings)
    return client_for("data", settings.url_of("data"), api_key=settings.local_api_key())


@app.command()
def backfill(
    symbols: Annotated[str, typer.Argument(help="comma-separated symbols, e.g. RELIANCE,TCS")],
    interval: Annotated[str, typer.Option(help="minute ... day")] = "day",
    from_: Annotated[str, typer.Option("--from", help="yyyy-mm-dd (IST)")] = "",
    to: Annotated[str | None, typer.Option(help="yyyy-mm-dd (IST); default today")] = None,
    exchange: str = "NSE",
    years: Annotated[float, typer.Option(help="when --from is not given")] = 5.0,
    wait: Annotated[bool, typer.Option(help="follow the job with a progress bar")] = True,
) -> None:
    """Queue a backfill on the data-worker and show its progress per symbol with an ETA."""
    if not from_:
        from datetime import date, timedelta

        from_ = (date.today() - timedelta(days=int(365.25 * years))).isoformat()
    body = {
        "exchange": exchange,
        "interval": interval,
        "from": from_,
        "to": to,
        "symbols": [s.strip() for s in symbols.split(",") if s.strip()],
    }
    with _client() as client:
        try:
            job = client.request("POST", "/backfill", json=body)
        except (ServiceError, ServiceUnavailable) as exc:
            console.print(f"[red]dalal data backfill:[/red] {exc}")
            raise typer.Exit(1) from None
        job_id = job["job_id"]
        console.print(f"backfill job [bold]{job_id}[/bold]: {job['symbols']} symbols")
        if not wait:
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("backfill", total=job["symbols"])
            while True:
                status = client.request("GET", f"/backfill/{job_id}")
                running = [s for s, v in status["symbols"].items() if v["state"] == "running"]
                progress.update(
                    task,
                    completed=status["done"],
                    description=f"backfill {', '.join(running[:3]) or ''}".strip(),
                )
                if status["state"] == "finished":
                    break
                time.sleep(0.5)
        failed = {s: v for s, v in status["symbols"].items() if v["state"] == "failed"}
        for sym, v in failed.items():
            console.print(f"[red]{sym}[/red]: {v.get('error', '')}")
        console.print(f"done: {status['done'] - status['failed']} ok, {status['failed']} failed")
        if failed:
            raise typer.Exit(1)


@app.command()
def coverage(symbol: Annotated[str | None, typer.Option()] = None) -> None:
    """Cached series and the session days they miss."""
    with _client() as client:
        body = client.request("GET", "/coverage", params={"symbol": symbol} if symbol else {})
    for s in body["series"]:
        missing = s["missing_sessions"]
        console.print(
            f"{s['exchange']}:{s['symbol']} {s['interval']}: {s['session_days']} "
            f"sessions, {len(missing)} missing {missing[:5]}"
        )


@app.command()
def jobs() -> None:
    """The scheduled jobs (IST, session days), when each is next due and how it last ran."""
    with _client() as client:
        body = client.request("GET", "/jobs")
    for job in body["jobs"]:
        last = job.get("last_run") or {}
        verdict = last.get("state", "never run")
        if "reason" in last:
            verdict += f" ({last['reason']})"
        console.print(
            f"{job['at_ist']} {job['job']:<20} next {job['next_due'] or '-'}  last: {verdict}"
        )
