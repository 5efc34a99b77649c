"""`dalal backtest --data-url`: the bars come through the data service's candles API (a real
data-service process over kitesim, from which it fetches what its cache misses). The backtest
equals the one over kitesim's own CSV files, the warm-up reaches back before `--from`, and a
bad symbol or an unreachable service is a one-line CLI error, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dalal_engine import history
from dalal_kitesim.testing import API_KEY, Kitesim
from dalal_shared.clients import DataClient
from dalal_shared.testing import DATA_SERVICE_KEY, data_service, free_port
from dalal_shared.timeutil import IST

KITESIM_DATA = Path(__file__).parents[2] / "services/kitesim/src/dalal_kitesim/data/nse"
DALAL = (sys.executable, "-m", "dalal_shared.cli")
RANGE = ("--from", "2022-01-01", "--to", "2023-12-31")


@pytest.fixture
def data_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    sim = Kitesim(kitesim_token_expiry=False).start()
    try:
        proc = data_service(
            redis_url=redis_url,
            kite_root=sim.root,
            kite_api_key=API_KEY,
            access_token=sim.access_token(),
            workdir=tmp_path,
        )
        try:
            yield proc.base_url
        finally:
            proc.stop()
    finally:
        sim.stop()


def backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DALAL, "backtest", "--strategy", "sma_cross", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DALAL_API_KEY": DATA_SERVICE_KEY},  # the CLI's key for the reads
    )


def test_a_backtest_over_the_data_service_equals_the_one_over_the_files(
    data_url: str, tmp_path: Path
) -> None:
    start = datetime(2022, 1, 1, tzinfo=IST)
    end = datetime(2023, 12, 31, 23, 59, tzinfo=IST)
    with DataClient(data_url, timeout=120, api_key=DATA_SERVICE_KEY) as client:
        served = history.from_service(
            client, "INFY", "day", start=start, end=end, warmup_bars=30
        )  # fmt: skip
    files = history.load("INFY", "day", data_dir=KITESIM_DATA, end=end)
    first = files.start.index(served.start[0])
    assert served.start[0] < start  # the warm-up reaches back before --from
    assert served.start == files.start[first:]
    assert (served.close == files.close[first:]).all()
    assert (served.volume == files.volume[first:]).all()

    via_service = backtest(
        "--symbols", "INFY,TCS", *RANGE, "--data-url", data_url, "--out", str(tmp_path / "svc")
    )
    assert via_service.returncode == 0, via_service.stderr
    via_files = backtest(
        "--symbols", "INFY,TCS", *RANGE, "--data-dir", str(KITESIM_DATA),
        "--out", str(tmp_path / "csv"),
    )  # fmt: skip
    assert via_files.returncode == 0, via_files.stderr
    a = json.loads((tmp_path / "svc/result.json").read_text())
    b = json.loads((tmp_path / "csv/result.json").read_text())
    assert a["trades"] and a["trades"] == b["trades"]
    assert a["report"] == b["report"]
    assert (tmp_path / "svc/report.html").exists()


def test_a_bad_symbol_or_no_service_is_a_clear_error(data_url: str, tmp_path: Path) -> None:
    bad = backtest("--symbols", "NOSUCHSYM", *RANGE, "--data-url", data_url)
    assert bad.returncode == 1
    assert "NOSUCHSYM" in bad.stderr and "Traceback" not in bad.stderr
    down = backtest("--symbols", "INFY", *RANGE, "--data-url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "not reachable" in down.stderr and "Traceback" not in down.stderr
    both = backtest(
        "--symbols", "INFY", *RANGE, "--data-url", data_url, "--data-dir", str(tmp_path)
    )  # fmt: skip
    assert both.returncode == 2 and "Traceback" not in both.stderr
