"""Regenerate the screenshots in docs/img: a backtest report, the equity-curve page and kitesim's
login page, rendered by headless Chromium (Debian's `chromium` package).

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dalal_engine.backtest_jobs import BacktestRequest, run
from dalal_kitesim.api import LOGIN_PAGE
from dalal_shared.performance import curve_html

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "services" / "kitesim" / "src" / "dalal_kitesim" / "data" / "nse"
OUT = ROOT / "docs" / "img"
PAGES = {  # page -> (screenshot, window size)
    "report/report.html": ("backtest-report.png", "1280,2000"),
    "curve.html": ("equity-curve.png", "960,470"),
    "login.html": ("kitesim-login.png", "600,560"),
}


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("screenshots: install Debian's chromium first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        request = BacktestRequest.model_validate(
            {
                "strategy": "sma_cross",
                "symbols": ["INFY", "TCS", "RELIANCE"],
                "from": "2023-01-01",
                "to": "2024-12-31",
                "params": {"fast_bars": 10, "slow_bars": 30},
                "risk": {"enforce_market_hours": False},
            }
        )
        result, _summary = run(request, out_dir=work / "report", cache_dir=None, data_dir=DATA)
        (work / "curve.html").write_text(curve_html(result.equity, title="Dalal equity curve"))
        (work / "login.html").write_text(LOGIN_PAGE.format(api_key="kitesim_key", user_id="KS0001"))
        OUT.mkdir(parents=True, exist_ok=True)
        for page, (name, size) in PAGES.items():
            subprocess.run(  # noqa: S603 - the machine's own browser, our own files
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={size}", f"--screenshot={OUT / name}", (work / page).as_uri()],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            print(f"docs/img/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
