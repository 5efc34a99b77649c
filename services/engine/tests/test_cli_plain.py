"""`dalal backtest` without typer: the `dalal` dispatcher runs the command straight from its
arguments (`cli.backtest_argv`) and leaves everything else to typer, which reads them as
always. The same arguments reach the command either way; what the plain reader does not take
(`--help`, an unknown or repeated option, a value typer refuses, a usage error) it hands back
having done nothing. `report.html` is written by a forked child (`cli._report_files`): the
same files as `write_report`, and a failure of the child's is raised. The dispatcher ends the
process at once after the command when nothing is left for the interpreter's exit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dalal_engine import cli, history, report
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings
from dalal_engine.report import write_report
from dalal_engine.strategy import BarSeries
from dalal_engine.strategyconfig import validate_document
from dalal_shared import cli_main
from dalal_shared.timeutil import IST

FIXTURES = Path(__file__).parent / "fixtures"
DALAL = Path(sys.executable).with_name("dalal")


@pytest.fixture(autouse=True)
def forks_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked paths taken even where this test process runs another thread (one a test
    before left behind would make `_may_fork` say no: the children here only read and write
    files); `test_forks_only_where_they_are_safe` tests `_may_fork` itself."""
    monkeypatch.setattr(cli, "_may_fork", lambda: True)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The command's work replaced by a record of what it was given."""
    seen: list[dict[str, Any]] = []

    def run(**kwargs: Any) -> int:
        seen.append(kwargs)
        return 0

    monkeypatch.setattr(cli, "_run", run)
    return seen


def through_typer(args: list[str]) -> int:
    """The arguments through typer, as the dispatcher builds its one-command app."""
    app = typer.Typer(name="dalal", add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _group() -> None:
        """Dalal (one command loaded)."""

    app.command(name="backtest")(cli.backtest)
    return CliRunner().invoke(app, ["backtest", *args]).exit_code


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--config", "c.yaml", "--data-dir", "csv"],
        [
            "--strategy=swing",
            "--symbols=INFY,TCS",
            "--param",
            "a=1",
            "--param=b=x",
            "--capital",
            "1e6",
            "--market-protection",
            "0",
            "--from",
            "2020-01-01",
            "--to=2021-01-01",
            "--interval",
            "15minute",
            "--out",
            "o",
            "--cache-dir",
            "cache",
            "--data-url",
            "http://127.0.0.1:8002",
        ],
        ["--market-protection", "100", "--capital", "2500.5", "--config", "a=b.yaml"],
    ],
)
def test_the_command_gets_what_typer_gives_it(args: list[str], calls: list[dict[str, Any]]):
    assert cli.backtest_argv(args) == 0
    assert through_typer(args) == 0
    plain, typed = calls
    assert plain == typed
    assert {k: type(v) for k, v in plain.items()} == {k: type(v) for k, v in typed.items()}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--nope", "1"],
        ["--strategy"],
        ["--strategy", "a", "--strategy", "b"],
        ["--capital", "abc"],
        ["--market-protection", "-1"],
        ["--market-protection", "101"],
        ["--market-protection", "nan"],
        ["--from", "-1"],
        ["--data-dir="],
        ["backtest"],
        ["--", "--config", "c.yaml"],
    ],
)
def test_what_the_plain_reader_does_not_take_goes_to_typer(
    args: list[str], calls: list[dict[str, Any]]
):
    assert cli.backtest_argv(args) is None
    assert calls == []


def test_a_usage_error_goes_to_typer_and_the_statuses_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def usage(**_: Any) -> int:
        raise cli.UsageError("give --strategy and --symbols, or --config")

    monkeypatch.setattr(cli, "_run", usage)
    assert cli.backtest_argv([]) is None
    assert through_typer([]) == 2  # typer's usage message
    for status in (1, 2):
        monkeypatch.setattr(cli, "_run", lambda status=status, **_: status)
        assert cli.backtest_argv(["--config", "c.yaml"]) == status

    def interrupted(**_: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    assert cli.backtest_argv([]) == 130  # as typer ends an interrupted command


def test_the_dispatcher_finds_the_plain_runner() -> None:
    assert cli_main._without_typer("dalal_engine.cli:backtest") is cli.backtest_argv
    assert cli_main._without_typer("dalal_engine.cli:parse_params") is None
    assert cli_main._without_typer("dalal_engine.sweep_cli:sweep") is None


def dalal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DALAL), "backtest", *args], capture_output=True, text=True, timeout=300
    )


def _plain(text: str, out: Path) -> str:
    """A summary without its speed figure (bars/s) and the report folder."""
    text = re.sub(r" \([\d,]+ bars/s\)", "", text).replace(str(out), "OUT")
    return re.sub(r"[ ─━┃│┏┓┡┩└┘┳╇┴\n]+", " ", text)


@pytest.mark.slow
def test_the_plain_run_and_typers_write_the_same(tmp_path: Path) -> None:
    common = ("--strategy", "sma_cross", "--symbols", "INFY,RELIANCE", "--data-dir", str(FIXTURES))
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    plain = dalal(*common, "--out", str(fast))
    # a repeated option is typer's to read (it takes the last)
    typed = dalal(*common, "--interval", "day", "--interval", "day", "--out", str(slow))
    assert plain.returncode == typed.returncode == 0, (plain.stderr, typed.stderr)
    for name in ("result.json", "report.html"):
        assert (fast / name).read_bytes() == (slow / name).read_bytes(), name
    assert _plain(plain.stdout, fast) == _plain(typed.stdout, slow)
    assert plain.stderr == typed.stderr
    assert json.loads((fast / "result.json").read_text())["trades"]
    # errors: the command's own (exit 2) and a usage error that typer reports
    unknown = dalal("--strategy", "nope", "--symbols", "INFY", "--data-dir", str(FIXTURES))
    assert unknown.returncode == 2 and "'nope'" in unknown.stderr
    bad_day = dalal(*common, "--from", "2020-13-01", "--out", str(tmp_path / "bad"))
    assert bad_day.returncode == 2 and "--from wants YYYY-MM-DD" in bad_day.stderr
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def run() -> tuple[BacktestResult, dict[str, BarSeries]]:
    cfg = validate_document(
        {
            "name": "t",
            "strategy": "sma_cross",
            "universe": ["INFY"],
            "params": {"fast_bars": 3, "slow_bars": 8},
        }
    )[0]
    start, end = datetime(2020, 10, 1, tzinfo=IST), datetime(2021, 3, 31, tzinfo=IST)
    data = history.load_universe(cfg, start=start, end=end, data_dir=FIXTURES)
    return Backtester(cfg, data, BacktestSettings(start=start, end=end)).run(), data


def test_the_report_files_are_write_reports(
    run: tuple[BacktestResult, dict[str, BarSeries]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, data = run
    want = write_report(result, tmp_path / "want", bars=data)
    with cli._report_files(result, tmp_path / "forked", data) as got:
        assert got[0].read_bytes() == want[0].read_bytes()  # result.json: already written
    assert got[1].read_bytes() == want[1].read_bytes()  # report.html: when the block ends
    monkeypatch.setattr(cli, "_may_fork", lambda: False)
    with cli._report_files(result, tmp_path / "one", data) as alone:
        assert [p.read_bytes() for p in alone] == [p.read_bytes() for p in want]


def test_a_failing_report_child_raises(
    run: tuple[BacktestResult, dict[str, BarSeries]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result, data = run

    def broken(*_: Any) -> str:
        raise RuntimeError("no page today")

    monkeypatch.setattr(report, "report_page", broken)
    with pytest.raises(cli.ReportNotWritten), cli._report_files(result, tmp_path, data):
        pass
    assert "no page today" in capfd.readouterr().err  # the child's traceback
    assert (tmp_path / "result.json").exists() and not (tmp_path / "report.html").exists()


def test_the_dispatcher_leaves_at_once_only_when_nothing_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import atexit
    import threading

    class Left(Exception):
        pass

    def leave(status: int) -> None:
        raise Left(status)

    monkeypatch.setattr(os, "_exit", leave)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 0)
    with pytest.raises(Left) as left:
        cli_main._leave(2)
    assert left.value.args == (2,)
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 1)  # an exit handler to run
    cli_main._leave(0)
    monkeypatch.setattr(atexit, "_ncallbacks", lambda: 0)
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # another thread
    cli_main._leave(0)
    monkeypatch.delattr(atexit, "_ncallbacks")  # no way to tell
    cli_main._leave(0)


# ---------------------------------------------------------------- the CSV files read ahead

END = datetime(2021, 3, 31, 23, 59, tzinfo=IST)


def same_bars(got: dict[str, BarSeries], want: dict[str, BarSeries]) -> None:
    assert list(got) == list(want)
    for symbol, series in want.items():
        other = got[symbol]
        assert other.symbol == symbol
        for name in ("open", "high", "low", "close", "volume", "seconds"):
            a, b = getattr(other, name), getattr(series, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (symbol, name)
        assert list(other.start) == list(series.start)


def test_bars_read_ahead_are_load_universes(tmp_path: Path) -> None:
    cfg = validate_document(
        {"name": "t", "strategy": "swing", "universe": ["RELIANCE", "INFY", "RELIANCE"]}
    )[0]
    want = history.load_universe(
        cfg, start=datetime(2020, 10, 1, tzinfo=IST), end=END, data_dir=FIXTURES
    )
    config = tmp_path / "c.yaml"
    config.write_text("strategies:\n- {name: t, strategy: swing, universe: [RELIANCE, INFY]}\n")
    for args in (
        (None, "reliance, infy,RELIANCE", "day"),  # --symbols, as the command reads them
        (config, None, "15minute"),  # the config's universe and interval, not --interval's
        (config, "RELIANCE,INFY", "day"),  # --symbols instead of the config's universe
    ):
        prefetch = cli._Prefetch.start(*args, "2021-03-31", FIXTURES)
        assert prefetch is not None
        got = prefetch.bars(["RELIANCE", "INFY", "RELIANCE"], "day", END)
        assert got is not None and prefetch.pid is None  # the child is reaped
        same_bars(got, want)
        prefetch.close()  # nothing left to do


@pytest.mark.parametrize(
    ("universe", "interval", "end"),
    [
        (["INFY"], "day", END),  # another universe
        (["RELIANCE", "INFY"], "day", END),  # another order
        (["INFY", "RELIANCE"], "15minute", END),
        (["INFY", "RELIANCE"], "day", datetime(2021, 3, 30, 23, 59, tzinfo=IST)),
    ],
)
def test_bars_read_otherwise_are_not_taken(
    universe: list[str], interval: str, end: datetime
) -> None:
    prefetch = cli._Prefetch.start(None, "INFY,RELIANCE", "day", "2021-03-31", FIXTURES)
    assert prefetch is not None
    assert prefetch.bars(universe, interval, end) is None
    assert prefetch.pid is None


def test_a_file_the_child_cannot_read_is_the_commands_to_read(tmp_path: Path) -> None:
    for symbols, to in (("INFY,NOPE", "2021-03-31"), ("INFY", "2021-13-01")):
        prefetch = cli._Prefetch.start(None, symbols, "day", to, FIXTURES)
        assert prefetch is not None
        assert prefetch.bars(["INFY"], "day", END) is None
        assert prefetch.pid is None


def test_a_command_that_ends_early_stops_the_child() -> None:
    prefetch = cli._Prefetch.start(None, "INFY,RELIANCE", "day", "2021-03-31", FIXTURES)
    assert prefetch is not None
    pid = prefetch.pid
    prefetch.close()
    assert prefetch.pid is None
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(pid, os.WNOHANG)  # type: ignore[arg-type]
    prefetch.close()  # twice: nothing


def test_no_second_core_no_reading_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_may_fork", lambda: False)
    assert cli._Prefetch.start(None, "INFY", "day", "2021-03-31", FIXTURES) is None


def test_forks_only_where_they_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux, with a second core and no other Python thread; else in-process."""
    import threading

    monkeypatch.undo()  # `_may_fork` itself, not the fixture's
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert cli._may_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # a thread that may hold a lock
    assert not cli._may_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)  # one core
    assert not cli._may_fork()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not cli._may_fork()


def test_a_run_with_another_thread_reads_and_writes_in_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A thread running beside the command: no child is forked, the files are the same."""
    import threading

    monkeypatch.undo()
    forked: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forked.append(1) or real_fork())
    stop = threading.Event()
    beside = threading.Thread(target=stop.wait)
    beside.start()
    try:
        status = cli._run(
            strategy="sma_cross",
            symbols="INFY,RELIANCE",
            from_="2020-10-01",
            to="2021-03-31",
            interval="day",
            config=None,
            param=None,
            cache_dir=tmp_path / "cache",
            data_dir=FIXTURES,
            data_url=None,
            capital=1_000_000.0,
            market_protection=3.0,
            out=tmp_path / "out",
        )
    finally:
        stop.set()
        beside.join()
    assert status == 0 and forked == []
    assert json.loads((tmp_path / "out" / "result.json").read_text())["trades"]
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
