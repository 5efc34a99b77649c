"""journal: orders, trades, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-25
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
        "broker_orders",
        sa.Column("client_order_id", sa.String(20), primary_key=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("corr", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("broker_order_id", sa.String(64), unique=True),
        sa.Column("reason", sa.String(64)),
        sa.Column("message", sa.Text),
        sa.Column("filled_quantity", sa.Integer, nullable=False),
        sa.Column("average_price", Money),
        sa.Column("send_attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_broker_orders_status", "broker_orders", ["status"])
    op.create_table(
        "broker_trades",
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(20), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Money, nullable=False),
        sa.Column("filled_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "broker_outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("broker_outbox")
    op.drop_table("broker_trades")
    op.drop_index("ix_broker_orders_status", "broker_orders")
    op.drop_table("broker_orders")
