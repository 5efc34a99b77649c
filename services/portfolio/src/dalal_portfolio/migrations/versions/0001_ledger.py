"""ledger: fills, positions, round trips, cash, equity snapshots, outbox, meta

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

import sqlalchemy as sa
from alembic import op

from dalal_shared.sqltypes import Money, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portfolio_fills",
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Money, nullable=False),
        sa.Column("filled_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("charged", sa.Boolean, nullable=False),
        sa.Column("charges", Money, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_portfolio_fills_symbol", "portfolio_fills", ["symbol", "product"])
    op.create_table(
        "portfolio_positions",
        sa.Column("exchange", sa.String(8), primary_key=True),
        sa.Column("symbol", sa.String(40), primary_key=True),
        sa.Column("product", sa.String(8), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("average_price", Money, nullable=False),
        sa.Column("realised_gross", Money, nullable=False),
        sa.Column("realised_net", Money, nullable=False),
        sa.Column("charges", Money, nullable=False),
        sa.Column("opened_at", UtcDateTime),
        sa.Column("last_fill_at", UtcDateTime),
        sa.Column("fills", sa.Integer, nullable=False),
        sa.Column("lots", sa.Text, nullable=False),
        sa.Column("exits", sa.Text, nullable=False),
    )
    op.create_table(
        "portfolio_round_trips",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("direction", sa.String(5), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("entry_price", Money, nullable=False),
        sa.Column("exit_price", Money, nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("closed_at", UtcDateTime, nullable=False),
        sa.Column("realised_gross", Money, nullable=False),
        sa.Column("charges", Money, nullable=False),
        sa.Column("realised_net", Money, nullable=False),
        sa.Column("exits", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_portfolio_round_trips_key", "portfolio_round_trips", ["exchange", "symbol", "product"]
    )
    op.create_table(
        "portfolio_cash_movements",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("amount", Money, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_table(
        "portfolio_equity_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False, index=True),
        sa.Column("equity", Money, nullable=False),
        sa.Column("cash", Money, nullable=False),
        sa.Column("realised_net", Money, nullable=False),
        sa.Column("unrealised", Money, nullable=False),
        sa.Column("gross_exposure", Money, nullable=False),
        sa.Column("open_positions", sa.Integer, nullable=False),
    )
    op.create_table(
        "portfolio_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(100), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("corr", sa.String(64)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, index=True),
    )
    op.create_table(
        "portfolio_meta",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "portfolio_meta",
        "portfolio_outbox",
        "portfolio_equity_snapshots",
        "portfolio_cash_movements",
        "portfolio_round_trips",
        "portfolio_positions",
        "portfolio_fills",
    ):
        op.drop_table(table)
