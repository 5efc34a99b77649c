"""The `dalal` executable: a thin dispatcher in front of `dalal_shared.cli`.

A command contributed by a service package (`dalal backtest`, `dalal sweep`, `dalal data ...`:
the `dalal.cli` entry points) loads only that package's command, not the whole CLI and every
other plugin: `dalal backtest` does not pay for the HTTP clients, the stack runner and the
other services' imports. Everything else (`dalal run`, `dalal status`, `--help`, ...) goes to
the full CLI.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points


def _command_name(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("--help", "-h"):
            return None
    return None


def main() -> None:
    name = _command_name(sys.argv[1:])
    if name is not None:
        found = [e for e in entry_points(group="dalal.cli") if e.name == name]
        if found:
            import typer

            try:
                target = found[0].load()
            except Exception:  # the full CLI says which command is unavailable and why
                target = None
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
