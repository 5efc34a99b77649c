"""The seed's `data/portfolio_state.json`: its shape, its import, its metrics.

The seed's PortfolioManager kept `initial_capital`, `current_capital`, `positions` (symbol ->
{symbol, entry_price, qty, entry_time, partial_exit_1, partial_exit_2, ...}) and
`closed_positions` (the same plus exit_price, exit_time, exit_reason, pnl, pnl_pct). Its times
are naive local times (`datetime.now().isoformat()` on an Indian machine): read as IST.

Import: each open position becomes one delivery (CNC) BUY fill `seed-<SYMBOL>` without charges
(the seed never knew them); each closed position becomes a closed round trip with the seed's
P&L. The seed's partial_exit_1/2 flags carry no quantities, so they are not reconstructed; the
export derives them from the ledger's list of exits.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dalal_portfolio.ledger import Exit, Fill, RoundTrip, q4
from dalal_shared.messages import Symbol
from dalal_shared.timeutil import IST


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=IST) if value.tzinfo is None else value


class SeedPosition(BaseModel):
    model_config = ConfigDict(extra="allow")

    symbol: Symbol
    entry_price: Decimal = Field(gt=0, max_digits=20, decimal_places=4)
    qty: int = Field(gt=0, le=10_000_000)
    entry_time: datetime
    partial_exit_1: bool = False
    partial_exit_2: bool = False

    _aware_entry = field_validator("entry_time")(_aware)


class SeedClosedPosition(SeedPosition):
    exit_price: Decimal = Field(gt=0, max_digits=20, decimal_places=4)
    exit_time: datetime
    exit_reason: str = ""
    pnl: Decimal = Field(max_digits=20)

    _aware_exit = field_validator("exit_time")(_aware)


class SeedState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    initial_capital: Decimal = Field(gt=0, max_digits=20)
    current_capital: Decimal = Field(max_digits=20)
    positions: dict[str, SeedPosition] = Field(default_factory=dict)
    closed_positions: list[SeedClosedPosition] = Field(default_factory=list)


def seed_fills(state: SeedState) -> list[Fill]:
    return [
        Fill(
            trade_id=f"seed-{p.symbol}",
            client_order_id="seed",
            broker_order_id=f"seed-{p.symbol}",
            exchange="NSE",
            symbol=p.symbol,
            side="BUY",
            product="CNC",
            quantity=p.qty,
            price=q4(p.entry_price),
            filled_at=p.entry_time,
            reason="seed import",
            charged=False,
        )
        for p in state.positions.values()
    ]


def seed_round_trips(state: SeedState) -> list[RoundTrip]:
    trips = []
    for i, c in enumerate(state.closed_positions):
        pnl = q4(c.pnl)
        exit_ = Exit(
            trade_id=f"seed-closed-{i}",
            client_order_id="seed",
            quantity=c.qty,
            price=q4(c.exit_price),
            at=c.exit_time,
            reason=c.exit_reason or "seed",
            realised_gross=pnl,
            charges=Decimal("0.0000"),
            realised_net=pnl,
        )
        trips.append(
            RoundTrip(
                exchange="NSE",
                symbol=c.symbol,
                product="CNC",
                direction="LONG",
                quantity=c.qty,
                entry_price=q4(c.entry_price),
                exit_price=q4(c.exit_price),
                opened_at=c.entry_time,
                closed_at=c.exit_time,
                realised_gross=pnl,
                charges=Decimal("0.0000"),
                realised_net=pnl,
                exits=(exit_,),
                source="seed",
            )
        )
    return trips


def seed_metrics(state: dict[str, Any]) -> dict[str, Any]:
    """`PortfolioManager.get_performance_metrics()` of the seed, same names, same rules."""
    closed = state["closed_positions"]
    if not closed:
        return {}
    wins = [p for p in closed if p["pnl"] > 0]
    losses = [p for p in closed if p["pnl"] <= 0]
    total_pnl = sum(p["pnl"] for p in closed)
    initial = state["initial_capital"]
    current = state["current_capital"]
    return {
        "total_trades": len(closed),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": len(wins) / len(closed),
        "total_pnl": total_pnl,
        "total_return_pct": (current - initial) / initial * 100,
        "avg_win": sum(p["pnl"] for p in wins) / len(wins) if wins else 0,
        "avg_loss": sum(p["pnl"] for p in losses) / len(losses) if losses else 0,
        "current_capital": current,
    }
