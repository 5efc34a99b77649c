"""data-cache: owns market data (candle cache, live feed)."""
