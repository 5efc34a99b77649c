"""The seed bot's data calls, answered by Dalal's data service.

Scripts written against the seed's `DataManager` keep working: `get_historical_data(symbol,
interval, days)` returns the same pandas DataFrame (indexed by `date`, columns open, high, low,
close, volume), but the candles come from the data service's Parquet cache, which fetches only
the missing sessions from Kite (the seed re-downloaded the whole range whenever its CSV was a day
old, and downloaded the instruments dump on every lookup).

    from dalal_shared.clients import DataClient
    from dalal_shared.seedcompat import DataManager

    dm = DataManager(DataClient("http://127.0.0.1:8002", api_key=key))  # reads need a key
    df = dm.get_historical_data("RELIANCE", "day", days=365)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from dalal_shared.clients import DataClient, ServiceError
from dalal_shared.timeutil import IST

if TYPE_CHECKING:
    import pandas as pd

# the seed's interval names that are not Kite's
SEED_INTERVALS = {"hour": "60minute", "1hour": "60minute", "1minute": "minute"}


class DataManager:
    """The seed's `DataManager` over the data service (pandas is needed for the DataFrame)."""

    def __init__(
        self, client: DataClient, *, exchange: str = "NSE", historical_days: int = 365
    ) -> None:
        self.client = client
        self.exchange = exchange
        self.historical_days = historical_days

    def get_historical_data(
        self,
        symbol: str,
        interval: str,
        days: int | None = None,
        *,
        to: date | datetime | None = None,
    ) -> pd.DataFrame | None:
        """The last `days` calendar days of candles up to `to` (default: now, IST), as the seed
        returned them; None when there are none (as the seed did). An unknown symbol or a bad
        interval raises `ServiceError` with the data service's error code."""
        import pandas as pd

        if days is None:
            days = self.historical_days
        if days <= 0:
            raise ValueError(f"days must be positive, got {days}")
        end = to if to is not None else datetime.now(IST)
        end_day = end.date() if isinstance(end, datetime) else end
        start_day = end_day - timedelta(days=days)
        body = self.client.candles(
            self.exchange,
            symbol,
            SEED_INTERVALS.get(interval, interval),
            start_day.isoformat(),
            end_day.isoformat(),
        )
        rows = body["candles"]
        if not rows:
            return None
        columns = body["columns"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["date"] = pd.to_datetime(frame["ts"])
        frame = frame.set_index("date")[["open", "high", "low", "close", "volume"]]
        return frame


__all__ = ["SEED_INTERVALS", "DataManager", "ServiceError"]
