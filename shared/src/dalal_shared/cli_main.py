"""The `dalal` executable: a thin dispatcher in front of `dalal_shared.cli`.

A command contributed by a service package (`dalal backtest`, `dalal sweep`, `dalal data ...`:
the `dalal.cli` entry points) loads only that package's command, not the whole CLI and every
other plugin: `dalal backtest` does not pay for the HTTP clients, the stack runner and the
other services' imports. The entry point is found by reading the installed distributions'
`entry_points.txt` directly (what `importlib.metadata` reads, without its ~50 ms of imports:
email, zipfile, csv). Everything else (`dalal run`, `dalal status`, `--help`, ...) goes to the
full CLI.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable
from typing import Any

GROUP = "dalal.cli"


def _command_name(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("--help", "-h"):
            return None
    return None


def _normalized(dist_dir: str) -> str:
    """A distribution's name from its `<name>-<version>.dist-info` folder, normalised as
    `importlib.metadata` does (case, `-`, `_` and `.` alike)."""
    name = dist_dir.rpartition(".")[0].partition("-")[0]
    return name.lower().replace("-", "_").replace(".", "_")


def entry_point_in(text: str, group: str, name: str) -> str | None:
    """The `module:attr` that `entry_points.txt` text declares for `name` in `group`."""
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section != group:
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.partition("[")[0].strip()  # `module:attr [extra]`: the extra aside
    return None


def find_entry_point(name: str, paths: Iterable[str] | None = None) -> str | None:
    """The `dalal.cli` entry point called `name` (`module:attr`), from the first distribution
    on `paths` (default `sys.path`) that declares it; one distribution name counts once, the
    first on the path, as with `importlib.metadata.entry_points`."""
    seen: set[str] = set()
    for entry in sys.path if paths is None else paths:
        try:
            with os.scandir(entry or ".") as it:
                dists = [d.name for d in it if d.name.endswith((".dist-info", ".egg-info"))]
        except OSError:  # not a folder (a zip), or gone
            continue
        for dist in dists:
            key = _normalized(dist)
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(entry or ".", dist, "entry_points.txt")) as fh:
                    text = fh.read()
            except OSError:
                continue
            found = entry_point_in(text, GROUP, name)
            if found is not None:
                return found
    return None


def _load(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr.strip() else ():
        target = getattr(target, part)
    return target


def main() -> None:
    name = _command_name(sys.argv[1:])
    if name is not None:
        spec = find_entry_point(name)
        if spec is not None:
            # A command's numpy work is elementwise: OpenBLAS's thread pool (one thread per
            # core, started when numpy is imported) only costs start-up CPU, about 90 ms of it
            # taken from the command on a busy 2-core machine; `dalal sweep`'s worker processes
            # inherit it, one BLAS thread each instead of one per core each. The user's own
            # setting wins.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            # Loading a command imports numpy, pydantic, typer and our modules: hundreds of
            # thousands of objects that live as long as the process and make next to no
            # garbage. No collections while they load, then frozen (`gc.freeze`): the
            # command's own collections never walk them again (a full one cost a backtest
            # ~50 ms).
            collecting = gc.isenabled()
            gc.disable()
            try:
                import typer

                try:
                    target = _load(spec)
                except Exception:  # the full CLI says which command is unavailable and why
                    target = None
            finally:
                gc.freeze()
                if collecting:
                    gc.enable()
            if target is not None:
                app = typer.Typer(
                    name="dalal",
                    add_completion=False,
                    pretty_exceptions_enable=False,
                )

                @app.callback()
                def _group() -> None:
                    """Dalal (one command loaded)."""

                if isinstance(target, typer.Typer):
                    app.add_typer(target, name=name)
                else:
                    app.command(name=name)(target)
                app(prog_name="dalal")
                return
    from dalal_shared.cli import main as full

    full()


if __name__ == "__main__":
    main()
