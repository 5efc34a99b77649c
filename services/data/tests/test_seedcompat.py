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
from dalal_shared.testing import DATA_SERVICE_KEY, data_service

if TYPE_CHECKING:
    from conftest import Kitesim

API_KEY = "kitesim_key"


@pytest.fixture
def data_url(kitesim: Kitesim, redis_url: str, tmp_path: Path) -> Iterator[str]:
    proc = data_service(
        redis_url=redis_url,
        kite_root=kitesim.root,
        kite_api_key=API_KEY,
        access_token=kitesim.access_token(),
        workdir=tmp_path,
    )
    try:
        yield proc.base_url
    finally:
        proc.stop()


def test_the_seeds_get_historical_data_returns_its_dataframe(data_url: str) -> None:
    with DataClient(data_url, api_key=DATA_SERVICE_KEY) as client:
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
