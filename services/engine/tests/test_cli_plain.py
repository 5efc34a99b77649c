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
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dalal_engine import cli, history, report
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings, Trade
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


def test_the_child_builds_the_rows_when_none_come_whole(
    run: tuple[BacktestResult, dict[str, BarSeries]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first rows of the page's trades table come from this process; where they do not
    come whole (it failed building them, or was stopped mid-way), the child builds them: the
    same page."""
    result, data = run
    want = write_report(result, tmp_path / "want", bars=data)[1].read_bytes()

    def cut_short(fd: int, *_: Any) -> None:
        os.write(fd, (1000).to_bytes(8, "little") + b"<h2>Trades</h2><table")
        os.close(fd)

    with monkeypatch.context() as patch:
        patch.setattr(cli, "_send_text", cut_short)
        with cli._report_files(result, tmp_path / "cut", data) as (_, page):
            pass
    assert page.read_bytes() == want
    parent, real = os.getpid(), report.trade_rows

    def failing_here(trades: list[Trade]) -> str:  # the child (forked before) builds them
        if os.getpid() == parent:
            raise RuntimeError("no rows today")
        return real(trades)

    monkeypatch.setattr(report, "trade_rows", failing_here)
    with cli._report_files(result, tmp_path / "failed", data) as (_, page):
        pass
    assert page.read_bytes() == want


def test_texts_through_a_pipe_come_whole_or_not_at_all() -> None:
    sent = "₹ <tables>" * 20_000  # more than a pipe holds: the reader reads as it comes
    receive, send = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(receive)
        cli._send_text(send, lambda _: sent, None)  # type: ignore[arg-type]
        os._exit(0)
    os.close(send)
    assert cli._received_text(receive) == sent
    os.waitpid(pid, 0)
    for payload in (b"", b"\x05\x00", (10).to_bytes(8, "little") + b"short"):
        receive, send = os.pipe()
        os.write(send, payload)
        os.close(send)
        assert cli._received_text(receive) is None, payload
    receive, send = os.pipe()
    os.close(receive)  # the reader gone: no error, the pipe closed
    cli._send_text(send, lambda _: sent, None)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(send)


def test_a_failing_report_child_raises(
    run: tuple[BacktestResult, dict[str, BarSeries]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result, data = run

    def broken(*_: Any) -> str:
        raise RuntimeError("no page today")

    monkeypatch.setattr(report, "page_frame", broken)
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
        assert got is not None
        same_bars(got, want)
        prefetch.close()
        assert prefetch.pid is None  # the child is reaped
        same_bars(got, want)  # the bars outlive the child


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
    prefetch.close()
    assert prefetch.pid is None


def test_a_file_the_child_cannot_read_is_the_commands_to_read(tmp_path: Path) -> None:
    for symbols, to in (("INFY,NOPE", "2021-03-31"), ("INFY", "2021-13-01")):
        prefetch = cli._Prefetch.start(None, symbols, "day", to, FIXTURES)
        assert prefetch is not None
        assert prefetch.bars(["INFY"], "day", END) is None
        prefetch.close()
        assert prefetch.pid is None


def test_the_config_document_is_the_one_the_child_parsed(tmp_path: Path) -> None:
    """The command validates the config file's document as the child parsed it (the command
    does not import yaml for it); with no config file, or one the child could not take (a
    file it cannot parse, a symbol without a file), the command reads the file itself."""
    import yaml

    text = (
        "strategies:\n- {name: t, strategy: swing, universe: [RELIANCE, INFY],"
        " schedule: {every_seconds: 60}, since: 2021-01-04}\n"  # a date: YAML's types come through
    )
    config = tmp_path / "c.yaml"
    config.write_text(text)
    prefetch = cli._Prefetch.start(config, None, "day", "2021-03-31", FIXTURES)
    assert prefetch is not None
    assert prefetch.document() == yaml.safe_load(text)
    assert prefetch.bars(["RELIANCE", "INFY"], "day", END) is not None  # the same read
    prefetch.close()
    broken = tmp_path / "broken.yaml"
    broken.write_text("strategies: [\n")
    unread = tmp_path / "unread.yaml"
    unread.write_text("{name: t, strategy: swing, universe: [NOPE]}\n")
    for args in ((None, "INFY"), (broken, None), (unread, None)):
        prefetch = cli._Prefetch.start(*args, "day", "2021-03-31", FIXTURES)
        assert prefetch is not None
        assert prefetch.document() is cli._UNREAD
        prefetch.close()


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


# ---------------------------------------------------------------- the summary, printed by the child

TWO_CORES = len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else False

PROBE = """
import atexit, sys
from dalal_shared import cli_main
atexit.register(lambda: sys.stderr.write(
    "\\nthis process imported: "
    + ",".join(m for m in ("rich", "importlib.metadata", "yaml") if m in sys.modules) + ".\\n"
))
sys.argv = ["dalal", "backtest", *sys.argv[1:]]
cli_main.main()
"""


def probe(*args: str, one_core: bool = False) -> subprocess.CompletedProcess[str]:
    """`dalal backtest` as the dispatcher runs it, saying at exit what this process imported
    (an exit handler: the dispatcher then leaves through the interpreter's exit)."""
    pin = min(os.sched_getaffinity(0)) if one_core else None
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=(lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None,
    )


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CORES, reason="the child runs only with a second core")
def test_the_child_prints_the_summary_as_this_process_would(tmp_path: Path) -> None:
    """With a second core the summary and the warnings come from the child, and the command
    itself imports neither rich nor importlib.metadata; on one core it prints them itself.
    Either way the same lines, in the same order, the report's paths last."""
    common = (
        "--strategy", "sma_cross", "--symbols", "INFY,RELIANCE", "--data-dir", str(FIXTURES),
        "--from", "2019-01-01",  # before the files start: a warning per symbol, on stderr
    )  # fmt: skip
    forked, alone, two = both_ways(tmp_path, *common)
    assert alone.stderr.endswith("this process imported: rich.\n")
    assert forked.stderr.split("this process")[0] == alone.stderr.split("this process")[0]
    assert "warning:" in forked.stderr and "bars used: " in forked.stderr
    lines = forked.stdout.splitlines()
    assert "sma_cross on INFY, RELIANCE (day)" in lines[0]
    assert lines[-1] == f"report: {two / 'report.html'}  data: {two / 'result.json'}"


def both_ways(
    tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str], Path]:
    """`dalal backtest args` with a second core and on one (`probe`), into `two` and `one`
    under `tmp_path`: both succeed, the command with a second core imports nothing it may
    leave to its children, and both print and write the same. The two runs and `two`."""
    two, one = tmp_path / "two", tmp_path / "one"
    forked = probe(*args, "--out", str(two))
    alone = probe(*args, "--out", str(one), one_core=True)
    assert forked.returncode == alone.returncode == 0, (forked.stderr, alone.stderr)
    assert forked.stderr.endswith("this process imported: .\n")
    assert _plain(forked.stdout, two) == _plain(alone.stdout, one)
    for name in ("result.json", "report.html"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    return forked, alone, two


@pytest.mark.slow
@pytest.mark.skipif(not TWO_CORES, reason="the child runs only with a second core")
def test_a_config_file_is_parsed_once_and_judged_as_always(tmp_path: Path) -> None:
    """With a config file the command validates the document the child parsed: it imports no
    yaml, and writes what the one-core path writes; a config that parses but does not
    validate is refused with the same message and status either way."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: t\nstrategy: sma_cross\ninterval: day\nuniverse: [INFY, RELIANCE]\n"
        "params: {fast_bars: 5, slow_bars: 20}\n"
    )
    common = ("--config", str(config), "--data-dir", str(FIXTURES), "--from", "2021-01-01")
    forked, alone, two = both_ways(tmp_path, *common)
    assert alone.stderr.endswith("this process imported: rich,yaml.\n")
    assert "sma_cross on INFY, RELIANCE (day)" in forked.stdout
    config.write_text(
        "name: t\nstrategy: sma_cross\nuniverse: [INFY]\nparams: {fast_bars: 0, nope: 1}\n"
    )
    refused = [probe(*common, "--out", str(two)), probe(*common, "--out", str(two), one_core=True)]
    assert [r.returncode for r in refused] == [2, 2]
    said = [r.stderr.split("this process")[0] for r in refused]
    assert said[0] == said[1]
    assert "invalid strategy config" in said[0] and "fast_bars" in said[0] and "nope" in said[0]
    assert "\n" not in said[0].strip()  # one line, not wrapped at 80 columns
    assert refused[0].stderr.endswith("this process imported: rich.\n")  # to say it


SUMMARY = cli.Summary(
    "sma_cross on INFY (day)", [("trades (closed)", "7")], ["INFY: the data starts late"], None
)


@pytest.fixture
def printer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child prints: stdout and stderr taken as the process's descriptors (capfd captures
    those, the child's writes included)."""
    monkeypatch.setattr(cli, "_prints_to_descriptors", lambda: True)


@pytest.mark.usefixtures("printer")
def test_the_child_prints_what_it_is_sent(capfd: pytest.CaptureFixture[str]) -> None:
    prefetch = cli._Prefetch.start(None, None, "day", "2021-03-31", None)
    assert prefetch is not None and prefetch.printer
    assert prefetch.bars(["INFY"], "day", END) is None  # nothing read ahead without files
    assert prefetch.send_summary(SUMMARY)
    assert prefetch.summary_printed()
    prefetch.close()
    out, err = capfd.readouterr()
    assert "sma_cross on INFY (day)" in out and "trades (closed)" in out
    assert "warning: INFY: the data starts late" in err


@pytest.mark.usefixtures("printer")
def test_a_child_gone_before_the_summary_leaves_it_to_the_command(
    capfd: pytest.CaptureFixture[str],
) -> None:
    prefetch = cli._Prefetch.start(None, "INFY", "day", "2021-03-31", FIXTURES)
    assert prefetch is not None and prefetch.pid is not None
    os.kill(prefetch.pid, signal.SIGKILL)
    prefetch.send_summary(SUMMARY)
    assert not prefetch.summary_printed()  # the command prints it
    prefetch.close()
    assert "trades (closed)" not in capfd.readouterr().out


@pytest.mark.usefixtures("printer")
def test_the_child_prints_while_another_process_holds_its_pipe(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The command's report child, forked after this one, holds the summary pipe open too:
    the child reads the summary to its length, not to the pipe's end."""
    prefetch = cli._Prefetch.start(None, None, "day", "2021-03-31", None)
    assert prefetch is not None
    release, hold = os.pipe()
    holder = os.fork()
    if holder == 0:  # another child of the command: it has every descriptor, until released
        os.close(hold)
        os.read(release, 1)
        os._exit(0)
    os.close(release)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the child waited for the holder"))
    signal.alarm(60)
    try:
        assert prefetch.send_summary(SUMMARY)
        assert prefetch.summary_printed()
    finally:
        signal.alarm(0)
        os.close(hold)
        os.waitpid(holder, 0)
        prefetch.close()
    assert "trades (closed)" in capfd.readouterr().out


def test_a_test_runners_buffers_get_the_summary_from_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stdout or stderr that is not the process's own descriptor (a test runner's, an
    embedding program's): no printing child; without files to read, no child at all."""
    import io

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert not cli._prints_to_descriptors()
    assert cli._Prefetch.start(None, None, "day", "2021-03-31", None) is None
    prefetch = cli._Prefetch.start(None, "INFY", "day", "2021-03-31", FIXTURES)
    assert prefetch is not None and not prefetch.printer
    assert not prefetch.send_summary(SUMMARY)
    prefetch.close()


def test_rich_is_asked_about_a_terminal_only_where_there_may_be_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not cli._stderr_may_be_terminal()
    with cli._progress() as progress:
        assert progress is None
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert cli._stderr_may_be_terminal()
    monkeypatch.setattr(sys, "stderr", Stream(False))
    for name, value in (("TTY_COMPATIBLE", "1"), ("FORCE_COLOR", "")):
        monkeypatch.setenv(name, value)
        assert cli._stderr_may_be_terminal()  # rich decides
        monkeypatch.delenv(name)
