"""A decision's `note` (the backtester passes the signal's leg and reason) leads its detail:
`note; detail`, the note alone when there is no detail, the detail alone without a note."""

from __future__ import annotations

from datetime import datetime

from dalal_engine.risk import AccountState, MarketState, RiskConfig, RiskManager
from dalal_shared.timeutil import IST

OPEN = datetime(2025, 3, 3, 10, 0, tzinfo=IST)  # a Monday, market open
ACCOUNT = AccountState(equity=1_000_000, cash=1_000_000, open_positions=0)
KILLED = MarketState(kill_switch=True, kill_switch_reason="operator")


def entry(rm: RiskManager, market: MarketState = MarketState(), note: str = "") -> str:
    decision = rm.check_entry(
        strategy="s", symbol="INFY", at=OPEN, reference_price=100.0, stop=95.0,
        fixed_quantity=None, account=ACCOUNT, market=market, note=note,
    )  # fmt: skip
    return decision.detail


def leave(rm: RiskManager, market: MarketState = MarketState(), note: str = "") -> str:
    decision = rm.check_exit(
        strategy="s", symbol="INFY", action="EXIT", at=OPEN, quantity=5, market=market, note=note
    )
    return decision.detail


def test_the_note_leads_the_detail():
    rm = RiskManager(RiskConfig())
    assert entry(rm, note="E breakout") == "E breakout"
    assert entry(rm, KILLED, note="E breakout") == "E breakout; operator"
    assert leave(rm, note="X stop") == "X stop"
    assert leave(rm, KILLED, note="X stop") == "X stop; operator"


def test_without_a_note_the_detail_is_as_before():
    rm = RiskManager(RiskConfig())
    assert entry(rm) == ""
    assert entry(rm, KILLED) == "operator"
    assert leave(rm) == ""
    assert leave(rm, KILLED) == "operator"
