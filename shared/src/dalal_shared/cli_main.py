"""The `dalal` executable: a thin dispatcher in front of `dalal_shared.cli`.

A command contributed by a service package (`dalal backtest`, `dalal sweep`, `dalal data ...`:
the `dalal.cli` entry points) loads only that package's command, not the whole CLI and every
other plugin: `dalal backtest` does not pay for the HTTP clients, the stack runner and the
other services' imports. The entry point is found by reading the installed distributions'
`entry_points.txt` directly (what `importlib.metadata` reads, without its ~50 ms of imports:
email, zipfile, csv). A command's module may also run it without typer (`WITHOUT_TYPER`, a
runner per command that reads its own arguments or hands them back): typer, its import and its
reading of the command's signature, then serve only `--help` and what the runner does not take.
Everything else (`dalal run`, `dalal status`, `--help`, ...) goes to the full CLI.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

GROUP = "dalal.cli"
PYDANTIC_PLUGINS = "pydantic"  # the entry point group pydantic loads its plugins from


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
    return scan_entry_points(name, paths)[0]


def scan_entry_points(name: str, paths: Iterable[str] | None = None) -> tuple[str | None, bool]:
    """`find_entry_point(name, paths)`, and whether a distribution on the path may declare a
    pydantic plugin (an entry point in the `pydantic` group, or a path entry that is a file,
    a zip whose distributions are not read here)."""
    seen: set[str] = set()
    found: str | None = None
    plugins = False
    for entry in sys.path if paths is None else paths:
        try:
            with os.scandir(entry or ".") as it:
                dists = [d.name for d in it if d.name.endswith((".dist-info", ".egg-info"))]
        except NotADirectoryError:  # a zip of packages, maybe of distributions too
            plugins = True
            continue
        except OSError:  # gone
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
            if found is None:
                found = entry_point_in(text, GROUP, name)
            plugins = plugins or _declares_group(text, PYDANTIC_PLUGINS)
    return found, plugins


def _declares_group(text: str, group: str) -> bool:
    """Whether `entry_points.txt` text has a `[group]` section."""
    return any(line.strip() == f"[{group}]" for line in text.splitlines())


@contextmanager
def imports_frozen() -> Iterator[None]:
    """Imports without garbage collection, their objects frozen after (`gc.freeze`): a
    command's numpy, pydantic, typer and our modules are hundreds of thousands of objects that
    live as long as the process and make next to no garbage, which the command's own
    collections then never walk. The collector is left on or off as it was."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _load(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr.strip() else ():
        target = getattr(target, part)
    return target


def _without_typer(spec: str) -> Callable[[list[str]], int | None] | None:
    """The runner of `spec`'s command that reads the arguments itself, if its (loaded) module
    has one: `WITHOUT_TYPER[<attribute>]`, which returns the command's exit status, or None
    having done nothing when typer should read the arguments instead."""
    module, _, attr = spec.partition(":")
    runners = getattr(sys.modules.get(module.strip()), "WITHOUT_TYPER", None)
    if not isinstance(runners, dict):
        return None
    runner = runners.get(attr.strip())
    return runner if callable(runner) else None


def _leave(status: int) -> None:
    """End the process with `status` at once when nothing is left to do at exit: the output
    flushed, no exit handler registered (`atexit`), no other thread. What is skipped is the
    interpreter's teardown (every module and object freed one by one: ~17 ms after a backtest,
    3% of its run). Returns, for the usual exit, when there is anything left or no way to
    tell (an interpreter without `atexit._ncallbacks`), or when the output cannot be flushed."""
    import atexit
    import threading

    count = getattr(atexit, "_ncallbacks", None)
    if count is None or count() or threading.active_count() != 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the usual exit reports it
        return
    os._exit(status)


def _no_pydantic_plugins() -> None:
    """pydantic's plugin loader, as it is with every plugin disabled, put in place before
    pydantic imports its own: that module imports `importlib.metadata` (and with it email,
    zipfile, csv, socket: ~8 ms of a backtest's start) only to look for plugins that
    `PYDANTIC_DISABLE_PLUGINS=__all__` says not to look for. Not done once pydantic's loader
    is imported."""
    import types

    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    loader = types.ModuleType(name, "pydantic's plugin loader with every plugin disabled")
    loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules[name] = loader


def main() -> None:
    name = _command_name(sys.argv[1:])
    if name is not None:
        spec, pydantic_plugins = scan_entry_points(name)
        if spec is not None:
            if not pydantic_plugins:
                # pydantic looks for its plugins when the first model is built, reading every
                # installed distribution again with importlib.metadata (~20 ms of a
                # backtest's start; the import of importlib.metadata it pays anyway). The scan
                # above read them all and found none: say so (the user's own setting wins).
                os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
                if os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__":
                    _no_pydantic_plugins()
            # A command's numpy work is elementwise: OpenBLAS's thread pool (one thread per
            # core, started when numpy is imported) only costs start-up CPU, about 90 ms of it
            # taken from the command on a busy 2-core machine; `dalal sweep`'s worker processes
            # inherit it, one BLAS thread each instead of one per core each. The user's own
            # setting wins.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            # the command's imports frozen: a full collection walking them cost a backtest ~50 ms
            with imports_frozen():
                try:
                    target = _load(spec)
                except Exception:  # the full CLI says which command is unavailable and why
                    target = None
                runner = _without_typer(spec) if target is not None else None
                if target is not None and runner is None:
                    import typer  # with the rest, frozen
            if runner is not None and sys.argv[1] == name:  # options before the name: typer
                status = runner(sys.argv[2:])
                if status is not None:
                    _leave(status)
                    if status:
                        raise SystemExit(status)
                    return
            if target is not None:
                import typer

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
