"""order holds: funds blocked by open BUY orders (from orders.commands and orders.events)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from dalal_shared.sqltypes import Money, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portfolio_order_holds",
        sa.Column("client_order_id", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(40)),
        sa.Column("side", sa.String(4)),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", Money),
        sa.Column("reported_filled", sa.Integer, nullable=False),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("placed", sa.Boolean, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("portfolio_order_holds")
