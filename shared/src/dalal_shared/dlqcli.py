"""`dalal dlq`: list, show, replay and purge dead letters, directly against Redis.

Redis comes from `--redis-url`, else DALAL_REDIS_URL, else the embedded stack's URL (what
`dalal run` starts: DALAL_EXTERNAL_REDIS_URL or redis://127.0.0.1:$DALAL_REDIS_PORT/0).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.table import Table

from dalal_shared.dlq import DeadEntry, DeadLetters, DlqError

dlq_app = typer.Typer(
    help="Dead-lettered bus entries: list, show, replay, purge (directly against Redis).",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis of the bus (default: DALAL_REDIS_URL, else the embedded stack's)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _redis_url(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("DALAL_REDIS_URL"):
        return os.environ["DALAL_REDIS_URL"]
    from dalal_shared.settings import load_settings
    from dalal_shared.stack import StackSettings

    try:
        return load_settings(StackSettings).redis_url
    except Exception:
        return "redis://127.0.0.1:6390/0"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]dalal dlq:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


@contextmanager
def _dlq(url: str | None) -> Iterator[DeadLetters]:
    target = _redis_url(url)
    try:
        client = redis.Redis.from_url(target, socket_connect_timeout=3, socket_timeout=10)
    except ValueError as exc:
        raise _fail(f"--redis-url {target!r} is not a Redis URL ({exc})", 2) from None
    try:
        yield DeadLetters(client)
    except redis.ConnectionError as exc:
        raise _fail(f"cannot reach Redis at {target} ({exc})") from None
    except redis.TimeoutError:
        raise _fail(f"Redis at {target} did not answer in time") from None
    except DlqError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(entries: list[DeadEntry]) -> Table:
    table = Table(title=f"{len(entries)} dead letter(s)")
    for col in ("dlq id", "stream", "group", "type", "reason", "deliveries", "error"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            e.dlq_id,
            e.stream,
            e.group,
            e.type or "?",
            e.reason or "?",
            str(e.deliveries),
            e.error[:120],
        )
    return table


@dlq_app.command("list")
def list_(
    stream: Annotated[
        str | None, typer.Argument(help="the original stream, e.g. orders.commands")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many per stream")] = 100,
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
) -> None:
    """Dead letters of one stream, or of every stream with a DLQ."""
    with _dlq(redis_url) as dlq:
        counts = dlq.streams()
        if stream is not None and stream not in counts:
            entries: list[DeadEntry] = []
        elif stream is not None:
            entries = dlq.list(stream, limit=limit)
        else:
            entries = dlq.list_all(limit=limit)
    if as_json:
        _print_json({"streams": counts, "entries": [e.summary() for e in entries]})
        return
    if not entries:
        where = f"dlq.{stream}" if stream else "any DLQ"
        console.print(f"no dead letters in {where}")
        return
    console.print(_table(entries))


@dlq_app.command()
def show(
    dlq_id: Annotated[str, typer.Argument(help="DLQ id (or the original entry / envelope id)")],
    stream: Annotated[str | None, typer.Option(help="look only in dlq.<stream>")] = None,
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
) -> None:
    """One dead letter with its original fields and error."""
    with _dlq(redis_url) as dlq:
        entry = dlq.find(dlq_id, stream)
    if as_json:
        _print_json(entry.detail())
        return
    table = Table(show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in entry.summary().items():
        table.add_row(key, str(value))
    for key, value in entry.fields.items():
        table.add_row(f"field {key}", value[:2000])
    if entry.raw:
        table.add_row("raw (escaped, base64)", entry.raw[:2000])
    console.print(table)


@dlq_app.command()
def replay(
    dlq_ids: Annotated[
        list[str] | None, typer.Argument(help="DLQ ids (or original entry / envelope ids)")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="the original stream")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every dead letter of --stream")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Publish dead letters again to their stream (same envelope id) and remove them."""
    if all_ and not stream:
        raise _fail("--all needs --stream (e.g. --stream orders.commands)", 2)
    if not all_ and not dlq_ids:
        raise _fail("name the dead letters to replay, or --all --stream <stream>", 2)
    with _dlq(redis_url) as dlq:
        if all_:
            assert stream is not None
            entries = dlq.list(stream, limit=100_000)
        else:
            entries = [dlq.find(i, stream) for i in dlq_ids or []]
        published = dlq.replay(entries)
    console.print(f"replayed {len(published)} entr{'y' if len(published) == 1 else 'ies'}")


@dlq_app.command()
def purge(
    stream: Annotated[str | None, typer.Argument(help="the original stream")] = None,
    dlq_id: Annotated[list[str] | None, typer.Option("--id", help="only these records")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Delete dead letters: every one of a stream, or the records given with --id."""
    if not stream and not dlq_id:
        raise _fail("name a stream (every record of it) or --id <dlq id>", 2)
    with _dlq(redis_url) as dlq:
        if dlq_id:
            entries = [dlq.find(i, stream) for i in dlq_id]
            n = dlq.delete(entries)
        else:
            assert stream is not None
            count = dlq.streams().get(stream, 0)
            if count and not yes:
                typer.confirm(f"delete all {count} dead letters of {stream}?", abort=True)
            n = dlq.purge(stream)
    console.print(f"deleted {n} dead letter(s)")
