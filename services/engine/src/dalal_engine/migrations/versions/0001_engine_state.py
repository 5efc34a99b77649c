"""engine state: bars, strategy state, intents (outbox), trades, decisions, meta

Revision ID: 0001
Revises:
Create Date: 2025-06-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_bars",
        sa.Column("exchange", sa.String(8), primary_key=True),
        sa.Column("symbol", sa.String(40), primary_key=True),
        sa.Column("interval", sa.String(16), primary_key=True),
        sa.Column("start", sa.String(40), primary_key=True),  # UTC ISO, sorts by time
        sa.Column("open", sa.Float, nullable=False),
        sa.Column("high", sa.Float, nullable=False),
        sa.Column("low", sa.Float, nullable=False),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("volume", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "engine_strategy_state",
        sa.Column("strategy", sa.String(40), primary_key=True),
        sa.Column("symbol", sa.String(40), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("average_price", sa.String(40), nullable=False),
        sa.Column("opened_at", sa.String(40)),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("last_bar", sa.String(40)),
    )
    op.create_table(
        "engine_intents",
        sa.Column("client_order_id", sa.String(20), primary_key=True),
        sa.Column("strategy", sa.String(40), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_quantity", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "engine_trades",
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(20), nullable=False),
    )
    op.create_table(
        "engine_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("strategy", sa.String(40), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("detail", sa.String(400), nullable=False),
        sa.Column("client_order_id", sa.String(20)),
    )
    op.create_table(
        "engine_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_meta")
    op.drop_table("engine_decisions")
    op.drop_table("engine_trades")
    op.drop_table("engine_intents")
    op.drop_table("engine_strategy_state")
    op.drop_table("engine_bars")
