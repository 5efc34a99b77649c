"""Built-in strategies (importing this package registers them)."""

from dalal_engine.strategies.sma_cross import SmaCross
from dalal_engine.strategies.swing import Swing

__all__ = ["SmaCross", "Swing"]
