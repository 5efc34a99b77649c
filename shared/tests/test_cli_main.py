"""The `dalal` dispatcher finds a plugin command the way `importlib.metadata` does."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from dalal_shared.cli_main import entry_point_in, find_entry_point, main, scan_entry_points


def test_every_installed_dalal_command_is_found_as_importlib_metadata_finds_it() -> None:
    installed = {e.name: e.value for e in entry_points(group="dalal.cli")}
    assert "backtest" in installed
    for name, value in installed.items():
        assert find_entry_point(name) == value
    assert find_entry_point("no-such-command") is None


def test_the_first_distribution_on_the_path_wins_and_other_groups_do_not_count(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, target in ((first, "one.cli:run"), (second, "two.cli:run")):
        dist = folder / "Some_Tool-1.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "entry_points.txt").write_text(
            f"[console_scripts]\nhello = x:y\n\n[dalal.cli]\n# a comment\nhello = {target}\n"
        )
    other = second / "other-2.0.dist-info"
    other.mkdir()
    (other / "entry_points.txt").write_text("[dalal.cli]\nbye = three.cli:app [extra]\n")
    paths = [str(tmp_path / "missing"), str(first), str(second)]
    assert find_entry_point("hello", paths) == "one.cli:run"
    assert find_entry_point("bye", paths) == "three.cli:app"
    assert entry_point_in("[console_scripts]\nhello = x:y\n", "dalal.cli", "hello") is None


def test_a_plugin_command_runs_with_one_blas_thread_unless_the_user_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Also: loading the command leaves the collector as it found it (its imports frozen)."""
    monkeypatch.setattr(gc, "freeze", gc.collect)  # this test process keeps collecting all
    for preset, want in ((None, "1"), ("4", "4")):
        if preset is None:
            monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset)
        monkeypatch.setattr(sys, "argv", ["dalal", "backtest", "--help"])
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert "--data-dir" in capsys.readouterr().out  # the backtest command answered
        assert os.environ["OPENBLAS_NUM_THREADS"] == want
        assert gc.isenabled()


def test_a_pydantic_plugin_anywhere_on_the_path_is_seen(tmp_path: Path) -> None:
    """The scan says whether pydantic would find a plugin: a `[pydantic]` section in any
    distribution (not only the command's), or a zip on the path it cannot look into."""
    folder = tmp_path / "site"
    tool = folder / "tool-1.0.dist-info"
    tool.mkdir(parents=True)
    (tool / "entry_points.txt").write_text("[dalal.cli]\nhello = tool.cli:run\n")
    paths = [str(folder)]
    assert scan_entry_points("hello", paths) == ("tool.cli:run", False)
    plugin = folder / "pydantic_tracer-0.1.dist-info"
    plugin.mkdir()
    (plugin / "entry_points.txt").write_text("[pydantic]\ntracer = pydantic_tracer:plugin\n")
    assert scan_entry_points("hello", paths) == ("tool.cli:run", True)
    assert scan_entry_points("other", paths) == (None, True)
    archive = tmp_path / "packages.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    assert scan_entry_points("hello", [str(archive), str(tool.parent)])[1] is True
    plugin.joinpath("entry_points.txt").unlink()
    assert scan_entry_points("hello", [str(tmp_path / "missing"), str(folder)])[1] is False


def test_pydantic_skips_its_plugin_search_only_when_there_are_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no pydantic plugin installed (this workspace has none) the command runs with
    pydantic's plugin search off; a user's own setting is kept; with a plugin installed it
    stays on."""
    monkeypatch.setattr(gc, "freeze", gc.collect)
    import dalal_shared.cli_main as cli_main

    scan = cli_main.scan_entry_points
    stood_in: list[str | None] = []
    monkeypatch.setattr(
        cli_main,
        "_no_pydantic_plugins",
        lambda: stood_in.append(os.environ.get("PYDANTIC_DISABLE_PLUGINS")),
    )
    for preset, plugins, want in (
        (None, False, "__all__"),
        ("tracer", False, "tracer"),
        (None, True, None),
    ):
        if preset is None:
            monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
        else:
            monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", preset)
        monkeypatch.setattr(
            cli_main, "scan_entry_points", lambda name, p=plugins: (scan(name)[0], p)
        )
        monkeypatch.setattr(sys, "argv", ["dalal", "backtest", "--help"])
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert "--data-dir" in capsys.readouterr().out
        assert os.environ.get("PYDANTIC_DISABLE_PLUGINS") == want
    assert scan("backtest")[1] is False  # nothing in this workspace declares one
    assert stood_in == ["__all__"]  # the loader's stand-in: only with every plugin off


STAND_IN = """
import os, sys
from dalal_shared import cli_main
os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
cli_main._no_pydantic_plugins()
from pydantic import BaseModel, ValidationError
from pydantic.plugin import _loader

class Order(BaseModel):
    quantity: int

assert Order(quantity="3").quantity == 3
try:
    Order(quantity="three")
except ValidationError as exc:
    assert exc.errors()[0]["loc"] == ("quantity",)
else:
    raise AssertionError("not validated")
print(list(_loader.get_plugins()), "importlib.metadata" in sys.modules)
"""


def test_the_plugin_loaders_stand_in_answers_as_pydantics_own_without_its_imports() -> None:
    """With every plugin disabled, the stand-in gives what pydantic's loader gives (no
    plugins), models build and validate as always, and `importlib.metadata` is not
    imported; pydantic's own loader, in a process without the stand-in, says the same."""
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    ours = subprocess.run(
        [sys.executable, "-c", STAND_IN], capture_output=True, text=True, env=env, check=True
    )
    assert ours.stdout.split() == ["[]", "False"]
    theirs = subprocess.run(
        [sys.executable, "-c", STAND_IN.replace("cli_main._no_pydantic_plugins()", "")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert theirs.stdout.split() == ["[]", "True"]
