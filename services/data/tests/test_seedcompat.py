"""The seed's `DataManager.get_historical_data(symbol, interval, days)` through the shared
client, against a real data-service process over kitesim."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from dalal_shared.clients import DataClient, ServiceError
from dalal_shared.seedcompat import DataManager
from dalal_shared.testing import ServiceProcess, free_port

if TYPE_CHECKING:
    from conftest import Kitesim

API_KEY = "kitesim_key"


@pytest.fixture
def data_url(kitesim: Kitesim, redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = ServiceProcess(
        "dalal_data",
        env={
            "DALAL_PORT": str(port),
            "DALAL_REDIS_URL": redis_url,
            "DALAL_CACHE_DIR": str(tmp_path / "cache"),
            "DALAL_KITE_ROOT_URL": kitesim.root,
            "DALAL_KITE_API_KEY": API_KEY,
            "DALAL_KITE_ACCESS_TOKEN": kitesim.access_token(),
            "DALAL_LOG_FORMAT": "json",
        },
        log_path=tmp_path / "data.log",
        port=port,
    ).start()
    try:
        proc.wait_healthy(timeout=60)
        yield proc.base_url
    finally:
        proc.stop()


def test_the_seeds_get_historical_data_returns_its_dataframe(data_url: str) -> None:
    with DataClient(data_url) as client:
        dm = DataManager(client)
        df = dm.get_historical_data("RELIANCE", "day", days=30, to=date(2024, 6, 28))
        assert df is not None
        assert list(df.columns) == ["open", "high", "low", "close", "volume"]
        assert df.index.name == "date"
        assert df.index.is_monotonic_increasing
        assert str(df.index.tz) in ("+05:30", "UTC+05:30", "Asia/Kolkata")
        days = {ts.date() for ts in df.index}
        assert min(days) >= date(2024, 5, 29) and max(days) <= date(2024, 6, 28)
        assert 15 <= len(df) <= 23  # the NSE sessions of those 30 days
        assert (df["high"] >= df["low"]).all()
        # the seed's "hour" is Kite's 60minute
        hourly = dm.get_historical_data("RELIANCE", "hour", days=3, to=date(2024, 6, 28))
        assert hourly is not None
        assert hourly.index.to_series().diff().min() == pd.Timedelta(hours=1)
        # a closed stretch gives None, as the seed did
        assert dm.get_historical_data("RELIANCE", "day", days=1, to=date(2024, 6, 30)) is None
        with pytest.raises(ServiceError) as bad:
            dm.get_historical_data("NOSUCHSYMBOL", "day", days=5, to=date(2024, 6, 28))
        assert 400 <= bad.value.status_code < 500
