"""An exchange trading symbol as the message contracts and strategy configs validate it: its
own module so that a strategy config (`dalal backtest`) does not build every bus message model
(`dalal_shared.messages`, which re-exports it) to check a symbol."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Symbol = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Z0-9&\-_. ]+$")]
