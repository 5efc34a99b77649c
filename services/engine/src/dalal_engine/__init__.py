"""engine: decides what to trade (strategies, risk, backtester)."""
